"""What one flow's pieces cost on the hot path, each timed alone. Prints JSON (microseconds a call).

One flow of ``bench/throughput.py`` is a request and its DELIVERED status. This times each piece of
the step they go through (``PartitionTask.step``), so a lever can be aimed at the piece that costs:
decoding (pydantic), ``decide()`` for each input, the state's codec, the command's and the outcome's
bytes, and the store's put and get. The best of 3 repeats of 20,000 calls each; run it compiled
(``bash scripts/compile.sh``) and pure to compare.

    python bench/pieces.py
"""

from __future__ import annotations

import json
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from throughput import delivered, request

from stream_app.compiled import mode
from stream_app.config import Settings
from stream_app.contracts import SendRequest, decode_request, decode_status
from stream_app.contracts.trusted import encode_command, encode_outcome
from stream_app.fallback import (
    EmitOutcome,
    RequestEvent,
    SendCommand,
    StatusEvent,
    decide,
    decode_state,
    encode_state,
)
from stream_app.runtime.task import limits_of
from stream_app.store import PartitionStore

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CALLS = 20_000


def cost(fn: Callable[[], object]) -> float:
    """Microseconds a call: the best of three repeats (the least disturbed by other work)."""
    return round(min(timeit.repeat(fn, number=CALLS, repeat=3)) / CALLS * 1e6, 2)


def main() -> None:
    limits = limits_of(Settings())
    _, request_bytes = request(1)
    _, status_bytes = delivered(1)
    req, status = decode_request(request_bytes), decode_status(status_bytes)
    assert isinstance(req, SendRequest)
    started = decide(None, RequestEvent(req), NOW, limits)
    assert started.state is not None and isinstance(started.effects[0], SendCommand)
    pending = encode_state(started.state)
    ended = decide(decode_state(pending), StatusEvent(status), NOW, limits)
    assert ended.state is not None and isinstance(ended.effects[0], EmitOutcome)
    command, outcome = started.effects[0].command, ended.effects[0].outcome
    pending_state, ended_state = started.state, ended.state
    request_event, status_event = RequestEvent(req), StatusEvent(status)
    result: dict[str, object] = {"benchmark": "pieces", "hot_path": mode(), "calls": CALLS}
    us: dict[str, float] = {
        "decode_request": cost(lambda: decode_request(request_bytes)),
        "decode_status": cost(lambda: decode_status(status_bytes)),
        "decide_request": cost(lambda: decide(None, request_event, NOW, limits)),
        "decode_state": cost(lambda: decode_state(pending)),
        "decide_status_with_decode_state": cost(
            lambda: decide(decode_state(pending), status_event, NOW, limits)
        ),
        "encode_state_pending": cost(lambda: encode_state(pending_state)),
        "encode_state_ended": cost(lambda: encode_state(ended_state)),
        "encode_command": cost(lambda: encode_command(command)),
        "encode_outcome": cost(lambda: encode_outcome(outcome)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = PartitionStore.open(Path(tmp), "pieces-changelog", 0)
        keys = iter(range(10**9))
        us["store_put"] = cost(lambda: store.put(b"k%d" % next(keys), pending, NOW + 1000))
        us["store_get"] = cost(lambda: store.get(b"k5"))
        store.close()
    us["decide_status"] = round(us["decide_status_with_decode_state"] - us["decode_state"], 2)
    result["us"] = us
    print(json.dumps(result))


if __name__ == "__main__":
    main()
