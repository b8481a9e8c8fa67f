"""The durable keyed timer store: flow state and a due-time index per partition, on RocksDB.

See :mod:`stream_app.store.partition` for the design; :mod:`stream_app.store.codec` for the bytes.
"""

from __future__ import annotations

from stream_app.store.changelog import INPUT_HEADER, input_header, input_offsets, uncommitted
from stream_app.store.codec import changelog_value, parse_changelog_value
from stream_app.store.errors import (
    InvalidChangelogRecord,
    InvalidDeadline,
    RestoreOrderError,
    StoreClosed,
    StoreError,
    StoreLocked,
    StoreOpenFailed,
)
from stream_app.store.partition import PartitionStore

__all__ = [
    "INPUT_HEADER",
    "InvalidChangelogRecord",
    "InvalidDeadline",
    "PartitionStore",
    "RestoreOrderError",
    "StoreClosed",
    "StoreError",
    "StoreLocked",
    "StoreOpenFailed",
    "changelog_value",
    "input_header",
    "input_offsets",
    "parse_changelog_value",
    "uncommitted",
]
