"""Errors of the store room.

Every message is one line: the CLI prints these without a traceback, and the runtime logs them next to
the partition they belong to.
"""

from __future__ import annotations

from pathlib import Path

from stream_app.errors import StreamAppError


class StoreError(StreamAppError):
    """Base class of everything the store room raises on purpose."""


class StoreLocked(StoreError):
    """Another open store (this process or another one) holds the RocksDB lock of a partition directory.

    Two owners of one partition would corrupt each other's index, so we refuse instead of waiting.
    """

    def __init__(self, path: Path, detail: str = "") -> None:
        hint = f" ({detail})" if detail else ""
        super().__init__(
            f"state store {path} is locked by another open store{hint}; is another processor instance "
            "using the same STREAM_APP_STATE_DIR? Give each instance its own state dir, or stop the other one"
        )
        self.path = path


class StoreOpenFailed(StoreError):
    """RocksDB refused to open a partition directory for a reason other than the lock.

    We never wipe the directory to get going again: the operator decides (it may hold the only copy of
    state not yet on the changelog). Deleting the directory is always safe, the changelog restores it.
    """

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"cannot open state store {path}: {detail}; "
            "if it is damaged, delete that directory and the processor restores it from the changelog"
        )
        self.path = path


class StoreClosed(StoreError):
    """The store was used after :meth:`PartitionStore.close`."""


class InvalidChangelogRecord(StoreError):
    """A changelog value (or a stored record) does not have the store's binary layout.

    ``reason`` is one line, fit for a dead-letter header or a log field.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid changelog record: {reason}")
        self.reason = reason


class InvalidDeadline(StoreError):
    """A deadline outside 0 .. 2**63-1 milliseconds since the epoch (it could not be ordered on disk)."""


class RestoreOrderError(StoreError):
    """:meth:`PartitionStore.apply_changelog` was called while ``put``/``delete`` writes were staged.

    Restoring writes its own batches with the changelog offset; mixing them with staged processing writes
    would make those durable before their effects are (DESIGN.md rule 3).
    """
