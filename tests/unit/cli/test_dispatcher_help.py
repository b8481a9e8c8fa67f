"""``stream-app dispatcher --help`` names every variable the dispatcher reads, as the README does."""

from __future__ import annotations

import argparse

import pytest

from stream_app.cli import build_parser
from stream_app.gateway.settings import ENV

#: Gateway-side variables the dispatcher does not read (the webhook receiver's and the poller's).
NOT_THE_DISPATCHERS = {"webhook_secret", "webhook_auth", "poller_metrics_port"}


def dispatcher_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["dispatcher"].format_help()


@pytest.mark.parametrize("var", sorted(v for k, v in ENV.items() if k not in NOT_THE_DISPATCHERS))
def test_the_dispatcher_help_names_each_of_its_variables(var: str) -> None:
    assert var in dispatcher_help(), f"stream-app dispatcher --help does not name {var}"
