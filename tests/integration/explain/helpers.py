"""What the explain tests share: the played demo's handle, and running the command as a user does."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
from dataclasses import dataclass
from typing import Any

import orjson

from stream_app.cli import main
from stream_app.config import Settings
from stream_app.demo.run import Row


@dataclass(frozen=True)
class Played:
    settings: Settings  # with the demo run's topic prefix
    rows: dict[str, Row]  # scenario key -> its message


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``stream-app ARGV`` as a user runs it: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    # In a thread of its own: the command runs its own event loop, also when an async test calls it.
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        code = pool.submit(main, list(argv)).result()
    return code, out.getvalue(), err.getvalue()


def explain_json(played: Played, message_id: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """``stream-app explain MESSAGE_ID --json`` on the demo's topics: exit status and document."""
    return explain_on(played.settings, message_id, *extra)


def explain_on(s: Settings, message_id: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """``stream-app explain MESSAGE_ID --json`` on the topics of ``s``: exit status and document."""
    code, out, err = run_cli(
        "explain",
        message_id,
        "--json",
        "--bootstrap-servers",
        s.bootstrap_servers,
        "--topic-prefix",
        s.topic_prefix,
        *extra,
    )
    assert out, err
    return code, orjson.loads(out)
