"""``stream-app explain`` on the demo's seven seed scenarios, played for real through the session broker.

The demo runs the processor, the dispatcher, the webhook receiver and the gateway simulator once
(``conftest.py``); each test then explains one message from the topics (``--json``) and checks that the
timeline names the right rule at each decision and that the replay agrees with what was published.
The same messages are also exported (``--export``) and replayed offline (``--from-file``).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.cli import main
from stream_app.demo.scenarios import SCENARIOS
from tests.integration.explain.helpers import Played, explain_json

#: Rules that only move an attempt's status along: how many there are depends on the gateway's
#: timing (an ACCEPTED may come after the SENT), so the decisions are checked without them.
_STATUS_ONLY = {"PROGRESS", "NO_CHANGE"}

#: Per scenario key: the decision rules in order, and a text each timeline must hold.
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "11": (
        ["ACCEPTED", "INITIAL", "TIMEOUT", "SUCCESS", "SUCCESS"],
        [
            "WHATSAPP attempt 0 still SENT at fallbackAfter 6 s -> SMS, reason TIMEOUT",
            "outcome SUCCEEDED on SMS DELIVERED",
        ],
    ),
    "12": (
        ["ACCEPTED", "INITIAL", "TIMEOUT", "SUCCESS", "SUCCESS"],
        ["WHATSAPP attempt 0 still SENT at fallbackAfter 6 s -> SMS, reason TIMEOUT"],
    ),
    "13": (
        ["ACCEPTED", "INITIAL", "FAILURE", "SUCCESS", "SUCCESS"],
        ["WHATSAPP attempt 0 got ERROR, a failure status -> SMS, reason FAILED"],
    ),
    "14": (
        ["ACCEPTED", "INITIAL", "FAILURE", "FAILURE", "SUCCESS", "SUCCESS"],
        [
            "WHATSAPP attempt 0 got REJECTED, a failure status -> RCS, reason FAILED",
            "RCS attempt 1 got REJECTED, a failure status -> SMS, reason FAILED",
            "SMS attempt 2 reached DELIVERED (successStatus DELIVERED)",
        ],
    ),
    "15": (
        ["ACCEPTED", "INITIAL", "FAILURE", "SUCCESS", "SUCCESS"],
        ["WHATSAPP attempt 0 got EXPIRED, a failure status -> SMS, reason FAILED"],
    ),
    "16": (
        ["ACCEPTED", "INITIAL", "SUCCESS", "SUCCESS", "LATE_STATUS"],
        [
            "outcome SUCCEEDED on WHATSAPP DELIVERED",
            "WHATSAPP attempt 0 READ after the end: late-status, doubleDelivery false",
        ],
    ),
    "17": (
        ["ACCEPTED", "INITIAL", "FAILURE", "FAILURE", "FAILURE", "LAST_STEP"],
        ["SMS attempt 2 got REJECTED, a failure status", "no step left after step 2: outcome FAILED"],
    ),
}


def decisions(doc: dict[str, Any]) -> list[str]:
    return [r["rule"] for e in doc["timeline"] for r in e["rules"] if r["rule"] not in _STATUS_ONLY]


def texts(doc: dict[str, Any]) -> list[str]:
    return [r["text"] for e in doc["timeline"] for r in e["rules"]]


@pytest.mark.parametrize("key", [s.key for s in SCENARIOS], ids=[s.name for s in SCENARIOS])
def test_each_seed_scenario_explained_from_the_topics_names_its_rules_and_agrees(
    played: Played, key: str
) -> None:
    rules, lines = EXPECTED[key]
    code, doc = explain_json(played, played.rows[key].message_id)
    assert doc["differences"] == [], doc["differences"]
    assert (code, doc["agrees"]) == (0, True)
    assert decisions(doc) == rules, texts(doc)
    for line in lines:
        assert line in texts(doc), texts(doc)
    # every replayed command and outcome was matched to the record the processor published
    outputs = [o for e in doc["timeline"] for o in e["outputs"]]
    assert outputs and all(o["published"] for o in outputs)


@pytest.mark.parametrize("key", [s.key for s in SCENARIOS], ids=[s.name for s in SCENARIOS])
def test_each_seed_scenario_exported_replays_offline_to_the_same_timeline(
    played: Played, key: str, tmp_path: Path
) -> None:
    message_id = played.rows[key].message_id
    export = tmp_path / f"{message_id}.jsonl"
    code, live = explain_json(played, message_id, "--export", str(export))
    assert code == 0
    lines = export.read_bytes().splitlines()
    assert len(lines) == live["records"]
    s = played.settings
    out = io.StringIO()
    # No broker and no prefix needed offline: the topics are matched by their names' stems.
    with contextlib.redirect_stdout(out):
        code = main(["explain", message_id, "--json", "--from-file", str(export)])
    offline = orjson.loads(out.getvalue())
    assert (code, offline["agrees"]) == (0, True), offline["differences"]
    assert decisions(offline) == EXPECTED[key][0]
    # the same steps at the same moments (the offline replay ends at the last record, not now)
    assert [e["at"] for e in offline["timeline"]] == [e["at"] for e in live["timeline"]][
        : len(offline["timeline"])
    ]
    assert s.topic_prefix in lines[0].decode()
