"""Encoded bytes of a pending 3-step flow, with and without its opaque content; prints JSON.

The flow is CONTRACT.md's own example (WhatsApp -> RCS -> SMS, Banca Adriatica), built through
``decide()`` exactly as the processor would: the request arrives, WhatsApp is issued and reports
SENT with a provider id, so the stored state holds one open attempt (and, since codec version 2, the
SENT's time for the outcome's statusTimes). "without content" is the same
request with empty ``content`` and ``metadata``: the processor's own overhead per pending flow.
Also times encode/decode/decide briefly (a rough per-core figure, not a benchmark of record).

    /tmp/venv/bin/python bench/state_size.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from stream_app.contracts import DeliveryStatus, SendRequest
from stream_app.fallback import (
    FlowState,
    Limits,
    RequestEvent,
    StatusEvent,
    decide,
    decode_state,
    encode_state,
)

NOW = 1_775_722_501_000  # 2026-04-09T08:15:01Z, a second after the example's requestedAt
LIMITS = Limits(
    max_flow_ms=72 * 3_600_000, orphan_status_ms=600_000, late_status_ms=86_400_000, dedup_ms=86_400_000
)


SMS_TEXT = (
    "Gentile Giulia, e stata registrata una transazione di EUR 1.250,00 in data 09/04/2026. "
    "Se non riconosci questa operazione, chiama il numero verde 800.123.456."
)


def example(with_content: bool) -> SendRequest:
    def body(value: dict[str, Any]) -> dict[str, Any]:
        return value if with_content else {}

    return SendRequest.model_validate(
        {
            "messageId": "txn-notifica-20260409-001",
            "tenant": "banca-adriatica",
            "destination": "+393401234567",
            "channels": [
                {
                    "channel": "WHATSAPP",
                    "fallbackAfter": 600,
                    "successStatus": "DELIVERED",
                    "content": body(
                        {"phoneNumberId": 5, "template": {"id": 42}, "placeholders": {"nome": "Giulia"}}
                    ),
                },
                {"channel": "RCS", "fallbackAfter": 300, "content": body({"agentId": 1, "templateId": 10})},
                {
                    "channel": "SMS",
                    "content": body({"sender": "BancaAdri", "text": SMS_TEXT}),
                },
            ],
            "ttl": 3600,
            "simulation": False,
            "campaignId": "txn-2026-04",
            "metadata": body({"anything": "copied to the outcome"}),
            "requestedAt": "2026-04-09T10:15:00+02:00",
        }
    )


SENT = DeliveryStatus.model_validate(
    {
        "messageId": "txn-notifica-20260409-001",
        "attempt": 0,
        "channel": "WHATSAPP",
        "status": "SENT",
        "providerMessageId": "wamid.HBgMMzkzNDAxMjM0NTY3FQIAERgSQjA5RjM4",
    }
)


def pending(with_content: bool) -> FlowState:
    state = decide(None, RequestEvent(example(with_content)), NOW, LIMITS).state
    state = decide(state, StatusEvent(SENT), NOW + 2000, LIMITS).state
    assert state is not None
    return state


def rate(fn: Callable[[], object], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return rounds / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20_000, help="iterations per timing (default 20000)")
    args = parser.parse_args(argv)

    with_content = pending(True)
    without = pending(False)
    data = encode_state(with_content)
    assert decode_state(data) == with_content
    request = RequestEvent(example(True))
    result = {
        "flow": "pending 3-step WHATSAPP->RCS->SMS, attempt 0 SENT with provider id",
        "bytes_without_content": len(encode_state(without)),
        "bytes_with_content": len(data),
        "opaque_content_bytes": len(with_content.opaque),
        "target_bytes_without_content": 300,
        "encode_per_s": round(rate(lambda: encode_state(with_content), args.rounds)),
        "decode_per_s": round(rate(lambda: decode_state(data), args.rounds)),
        "decide_status_per_s": round(
            rate(lambda: decide(with_content, StatusEvent(SENT), NOW + 3000, LIMITS), args.rounds)
        ),
        "decide_request_per_s": round(
            rate(lambda: decide(None, request, NOW, LIMITS), args.rounds // 4 or 1)
        ),
        "python": sys.version.split()[0],
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
