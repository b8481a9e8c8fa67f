"""Replaying the changelog into a partition store, and wiping one for a replay from the start.

A base of :class:`~stream_app.store.partition.PartitionStore`, kept apart from its reads, writes and
flush: the restore stages changelog records (``apply_changelog``) and ends with the store's
``flush``; ``reset`` forgets everything so the next restore replays the whole changelog.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

from mypy_extensions import mypyc_attr
from rocksdict import Rdict, WriteBatch

from stream_app.store import codec
from stream_app.store.due import Staged
from stream_app.store.errors import InvalidChangelogRecord, RestoreOrderError, StoreError
from stream_app.store.rocks import FLUSHED_AT_KEY, META_KEY

#: During a restore we write a batch every this many changelog records: large enough that per-batch
#: overhead (one WAL write, one meta put) is noise, small enough that the staged dict stays a few MiB.
RESTORE_BATCH = 20_000

#: A restore into an EMPTY store (no record, no offset: a new instance or a lost disk) keeps a one-probe
#: bit filter (this many bytes) of the keys it has staged: a key it has never seen cannot be on disk, so
#: its old record is known absent without a read (a read costs about 1.5 us of the ~10 us per restored
#: record). A filter hit only means "maybe seen" and reads as before, so the state, the index (no ghosts)
#: and the armed-timer count stay exact. 32M bits: by the 10 millionth key about one new key in four
#: hits and is read. Measured (``bench/store.py --count 10000000``): restore 98k -> 137k records/s.
#: 4 MiB per partition while it restores from scratch, dropped at the end of the restore (``flush``,
#: ``put``, ``delete``, ``close``).
_FRESH_FILTER_BYTES = 4 << 20
_FRESH_FILTER_MASK = _FRESH_FILTER_BYTES * 8 - 1


# The store's one base that is a class, not a mypyc trait: a compiled subclass then reads these
# attributes at fixed offsets, where a trait looks each one up (measured: a restore 3.5% slower).
@mypyc_attr(allow_interpreted_subclasses=True)  # PartitionStore allows them (see there)
class ChangelogReplay:
    """``apply_changelog`` and ``reset`` of :class:`~stream_app.store.partition.PartitionStore`."""

    path: Path
    flushed_at_ms: int | None
    _db: Rdict | None
    _values: Rdict | None
    _timers: Rdict | None
    _values_cf: Any
    _timers_cf: Any
    _offset: int | None
    _armed: int
    _low_water: int
    _staged: dict[bytes, Staged]
    _staged_heap: list[tuple[int, bytes]]
    _restore_offset: int | None
    _processing_staged: bool
    _fresh: bytearray | None

    def _require_open(self) -> None:
        raise NotImplementedError  # PartitionStore's

    def _stage(self, key: bytes, record: bytes | None, deadline: int | None) -> None:
        raise NotImplementedError  # PartitionStore's

    def _discard_staged(self) -> None:
        raise NotImplementedError  # PartitionStore's

    def flush(self, changelog_offset: int | None = None) -> None:
        raise NotImplementedError  # PartitionStore's

    def reset(self) -> None:
        """Forget every record, timer and the changelog offset, in one atomic batch; drop staged writes.

        The next restore then replays the whole changelog. For a store whose restore skipped records
        against a committed-offset answer that turned out stale: its durable offset lies past them,
        so only a replay from the start reads them again. Done on the open store, so no other
        instance sharing the state directory can open it half wiped.
        """
        self._require_open()
        self._discard_staged()
        self._fresh = None
        batch = WriteBatch(raw_mode=True)
        for cf, handle in ((self._values, self._values_cf), (self._timers, self._timers_cf)):
            assert cf is not None  # open: checked above
            it = cf.iter()
            it.seek_to_last()
            last = it.key() if it.valid() else None
            del it  # a live iterator keeps the database (and its LOCK) open
            if last is not None:
                # delete_range's end is exclusive: the last key goes by itself.
                batch.delete_range(b"", last, handle)
                batch.delete(last, handle)
        batch.put(META_KEY, codec.encode_meta(None, 0))
        batch.delete(FLUSHED_AT_KEY)
        try:
            self._db.write(batch)  # type: ignore[union-attr]  # _require_open checked it
        except Exception as exc:
            raise StoreError(f"resetting state store {self.path} failed: {exc}") from None
        self._offset = None
        self._armed = 0
        self._low_water = 0
        self.flushed_at_ms = None

    def apply_changelog(self, key: bytes | None, record: bytes | None, offset: int) -> None:
        """Restore one changelog record (None = tombstone) read at ``offset``; rebuilds the index.

        Records at or below the offset already applied are skipped (a restore that re-reads an overlap
        must not move state backwards). Writes go out in batches of :data:`RESTORE_BATCH` with their
        offset; call ``flush()`` at the end of the restore to make the last ones durable (and to end the
        restore: into an empty store it skips the reads of new keys, see :data:`_FRESH_FILTER_BYTES`).
        Raises :class:`InvalidChangelogRecord` for a record without a key or a value that is not a
        changelog value, and :class:`RestoreOrderError` if ``put``/``delete`` writes are staged.
        """
        if self._processing_staged or self._db is None:
            self._require_open()
            raise RestoreOrderError(
                f"state store {self.path}: flush staged put/delete writes before applying changelog records"
            )
        if key is None:
            # Not one of ours: each change is keyed by its messageId. Staged, it failed the flush
            # that ends the restore (a pure build) on every try.
            raise InvalidChangelogRecord("no key (each change is keyed by its messageId)")
        applied = self._restore_offset if self._restore_offset is not None else self._offset
        if applied is not None and offset <= applied:
            return
        if applied is None and self._fresh is None and self._is_empty():
            self._fresh = bytearray(_FRESH_FILTER_BYTES)
        if record is None:
            deadline = None
        elif len(record) >= 9 and record[0] == codec.TAG_TIMER and record[1] < 0x80:
            # The common case, decoded inline (this loop runs per record of a restore): a timer
            # header whose deadline is below 2**63.
            deadline = int.from_bytes(record[1:9], "big")
        else:
            deadline = codec.record_deadline(record)  # validates, with a one-line reason
        fresh = self._fresh
        if fresh is not None:
            h = hash(key) & _FRESH_FILTER_MASK
            i = h >> 3
            bit = 1 << (h & 7)
            if not fresh[i] & bit:
                # Never staged by this restore, which started on an empty store: not on disk either.
                fresh[i] |= bit
                self._restore_offset = offset
                if record is None:
                    return  # deleting what does not exist: nothing to write
                if deadline is not None:
                    self._armed += 1
                    heapq.heappush(self._staged_heap, (deadline, key))
                self._staged[key] = (record, deadline, None)
                if len(self._staged) >= RESTORE_BATCH:
                    self.flush()
                    self._fresh = fresh
                return
        self._stage(key, record, deadline)
        self._restore_offset = offset
        if len(self._staged) >= RESTORE_BATCH:
            self.flush()
            self._fresh = fresh

    def _is_empty(self) -> bool:
        """True when the store holds no record at all (durable or staged): a restore can start fresh."""
        if self._staged or self._values is None:
            return False
        it = self._values.iter()
        it.seek_to_first()
        empty = not it.valid()
        del it  # a live iterator keeps the database (and its LOCK) open
        return empty
