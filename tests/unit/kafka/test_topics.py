"""``require_topics``: the one start-up check of topics shared by every service and command."""

from __future__ import annotations

import pytest

from stream_app.kafka.errors import TopicsMissing, TopicsNotCoPartitioned
from stream_app.kafka.topics import require_topics

COUNTS = {"p.send-requests": 12, "p.delivery-status": 12, "p.dead-letters": 4, "odd.delivery-status": 4}


def test_present_and_agreeing_topics_pass() -> None:
    require_topics(
        COUNTS,
        "k:9092",
        ["p.delivery-status", "p.dead-letters"],
        together=["p.send-requests", "p.delivery-status"],
    )


def test_a_missing_topic_is_one_line_naming_it_and_the_fix() -> None:
    with pytest.raises(TopicsMissing) as caught:
        require_topics(COUNTS, "k:9092", ["typo.delivery-status", "p.dead-letters"])
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("missing topic(s) typo.delivery-status on k:9092; run `stream-app topics create`")
    assert "STREAM_APP_TOPIC_PREFIX" in text
    assert caught.value.names == ["typo.delivery-status"]


def test_a_topic_named_only_in_together_is_needed_too() -> None:
    with pytest.raises(TopicsMissing, match=r"missing topic\(s\) odd.send-requests "):
        require_topics(
            COUNTS, "k:9092", ["odd.delivery-status"], together=["odd.send-requests", "odd.delivery-status"]
        )


def test_disagreeing_counts_are_one_line_with_every_count() -> None:
    counts = {**COUNTS, "odd.send-requests": 12}
    with pytest.raises(TopicsNotCoPartitioned) as caught:
        require_topics(counts, "k:9092", [], together=["odd.send-requests", "odd.delivery-status"])
    text = str(caught.value)
    assert "\n" not in text
    assert "odd.send-requests=12, odd.delivery-status=4" in text
    assert caught.value.counts == {"odd.send-requests": 12, "odd.delivery-status": 4}
