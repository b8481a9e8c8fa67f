"""The record headers CONTRACT.md defines, written once for every producer of the project.

- ``traceparent`` (W3C trace context): an input passes it on to every record it causes.
- Dead letters carry Kafka Connect's ``__error.*`` headers (names and order: the catalogue's
  :data:`~stream_app.contracts.catalogue.DEAD_LETTER_HEADERS`), after the original record's own.
"""

from __future__ import annotations

from collections.abc import Iterable

from stream_app.contracts.catalogue import DEAD_LETTER_HEADERS, TRACE_HEADER

Headers = list[tuple[str, bytes]]
#: Headers as a consumer hands them over: Kafka allows a header without a value (null), which
#: aiokafka gives as None. Typed so, compiled code (stream_app/compiled.py) takes them instead of
#: raising a TypeError on a record of any outside producer.
ReadHeaders = Iterable[tuple[str, bytes | None]]


def copied_headers(headers: ReadHeaders | None) -> Headers:
    """The headers an input passes on to what it causes: its ``traceparent`` (one without a value
    carries no trace, so it is not passed on)."""
    return [(k, v) for k, v in headers or () if k == TRACE_HEADER and v is not None]


def dead_letter_headers(
    reason: str, source_topic: str, partition: int, offset: int, error_class: str
) -> Headers:
    """Kafka Connect's ``__error.*`` headers of a dead letter.

    A record that never was on a topic (a webhook body) names its HTTP source as the topic and -1 as
    partition and offset.
    """
    values = (reason, source_topic, str(partition), str(offset), error_class)
    return [(name, value.encode()) for name, value in zip(DEAD_LETTER_HEADERS, values, strict=True)]
