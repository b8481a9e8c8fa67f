"""One partition's durable keyed timer store on RocksDB (rocksdict).

Layout of ``root/<topic>-<partition>/`` (one RocksDB database, three column families):

* ``values``: key -> record (``codec``: deadline header + value). The record is byte for byte the
  changelog value, so the deadline is state and travels with it.
* ``timers``: ``deadline (8-byte big-endian ms) + key`` -> empty. Derived and local-only: rebuilt while
  the changelog is replayed. Kept in its own column family so the tombstones that firing leaves behind are
  compacted away without rewriting the values, and so its scans never touch value blocks.
* ``default``: one meta key: the durable changelog offset and the armed-timer count.

Writes are staged in memory (``put``/``delete``/``apply_changelog``) and ``get``/``due``/``next_deadline``
see them; ``flush`` writes values, index changes and meta in ONE ``WriteBatch``, which RocksDB applies
atomically (all or nothing, also across column families, through the WAL). A crash therefore leaves the
state of the last flush with the changelog offset it was made from, never a half-applied batch, and the
runtime replays only the changelog tail after that offset.

Timers: one per key. Re-arming overwrites the deadline in the record; the index entry of the old deadline
is a *ghost* until the next flush removes it (we know the old deadline because the counter needs the old
record anyway). ``due`` checks every index entry against the record it points at (staged view first) and
skips, and stages the removal of, any entry whose deadline no longer matches. So cancel is lazy in memory
and the disk index converges at each flush.

Only staged writes (one flush interval) and a small read cache are held in Python: pending timers beyond
that live in RocksDB and are read in deadline order through a range scan bounded above by now and below
by a low-water mark (every index entry below it is known gone), so it never wades through the
tombstones of fired timers.

The module holds the store's reads, writes and flush; :mod:`.replay` replays the changelog into it (the
restore) and wipes it for a replay from the start, :mod:`.rocks` opens and tunes the RocksDB database,
:mod:`.due` merges staged timers with the disk index (and says why there is no wheel), and :mod:`.pages`
walks the keys a page at a time (the channel-control sweep).
"""

from __future__ import annotations

import heapq
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from mypy_extensions import mypyc_attr
from rocksdict import Rdict, WriteBatch

from stream_app.store import codec
from stream_app.store.due import DueScan, Staged
from stream_app.store.errors import (
    InvalidChangelogRecord,
    StoreClosed,
    StoreError,
    StoreOpenFailed,
)
from stream_app.store.pages import KeyPages
from stream_app.store.replay import ChangelogReplay
from stream_app.store.rocks import (
    FLUSHED_AT_KEY,
    META_KEY,
    TIMERS_CF,
    VALUES_CF,
    check_open_args,
    close_quietly,
    open_db,
)

#: The read cache only saves the second disk read of a key (``due``/``get`` then ``put``) within one
#: flush interval; past this size we drop it rather than let a long interval grow it without bound.
_READ_CACHE_MAX = 100_000

#: Disk deadline of a staged key whose disk record is not read yet (deadlines are >= 0).
_UNKNOWN = -1

#: The record layout of :mod:`.codec`, for the per-record reads and writes that build or split one
#: inline: each of ``changelog_value``, ``record_value`` and ``stored_deadline`` was a call into
#: interpreted code from this compiled module (the store codec stays pure: its own checks give the
#: contract's error for a wrong type): three or four calls a flow, 3% of a profile of
#: ``bench/hot_path.py``, which went 47.3 -> 45.1 us a record without them. The codec's functions
#: remain the definition; tests/unit/store/test_partition.py holds the two together.
_TAG_TIMER: Final = codec.TAG_TIMER
_TIMER: Final = bytes((codec.TAG_TIMER,))
_NO_TIMER: Final = bytes((codec.TAG_NO_TIMER,))
_TIMER_HEADER: Final = 9  # the tag and an 8-byte big-endian deadline
_MAX_DEADLINE_MS: Final = codec.MAX_DEADLINE_MS


# Interpreted subclasses allowed: the broker-free tests inject a failure at a step of the store
# (a flush that fails, a put that loses its timer) by overriding it, which a compiled class's
# methods otherwise ignore.
@mypyc_attr(allow_interpreted_subclasses=True)
class PartitionStore(ChangelogReplay, DueScan, KeyPages):
    """Durable flow state plus due-time index of one input partition (see the module docstring)."""

    def __init__(self, path: Path, db: Rdict) -> None:
        """Use :meth:`open`; this wraps an already opened database."""
        self.path = path
        self._db: Rdict | None = db
        self._values: Rdict | None = db.get_column_family(VALUES_CF)
        self._timers: Rdict | None = db.get_column_family(TIMERS_CF)
        self._values_cf: Any = db.get_column_family_handle(VALUES_CF)
        self._timers_cf: Any = db.get_column_family_handle(TIMERS_CF)
        raw_meta = db.get(META_KEY)
        offset, armed = codec.decode_meta(raw_meta) if raw_meta is not None else (None, 0)
        self._offset: int | None = offset
        raw_flushed = db.get(FLUSHED_AT_KEY)
        #: Wall-clock ms of the last flush that wrote; None when unknown (a store written before
        #: this was kept, or never flushed).
        self.flushed_at_ms: int | None = (
            int.from_bytes(raw_flushed, "big") if raw_flushed is not None and len(raw_flushed) == 8 else None
        )
        self._armed = armed
        self._staged: dict[bytes, Staged] = {}
        #: (deadline, key) of staged timers not yet handed to ``_staged_due``; may hold stale entries.
        self._staged_heap: list[tuple[int, bytes]] = []
        #: Sorted (deadline, key) of staged timers already popped from the heap; may hold stale entries.
        self._staged_due: list[tuple[int, bytes]] = []
        #: Index entries to delete at the next flush (ghosts found by ``due``).
        self._index_del: set[bytes] = set()
        #: Records read from disk since the last flush (None = absent); disk changes only at flush.
        self._read_cache: dict[bytes, bytes | None] = {}
        #: Staged keys whose disk record is not read yet (their disk deadline is ``_UNKNOWN``).
        self._unresolved: list[bytes] = []
        #: Every index entry below this deadline is known to be gone (or staged for deletion); due-scans
        #: seek here instead of the start, past the tombstones fired timers leave behind.
        self._low_water = 0
        self._restore_offset: int | None = None
        self._processing_staged = False
        #: Keys staged by a restore that started on an empty store (see ``_FRESH_FILTER_BYTES``); None
        #: outside such a restore.
        self._fresh: bytearray | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, root: Path, topic: str, partition: int) -> PartitionStore:
        """Open (creating if needed) ``root/<topic>-<partition>``; never wipes an existing store.

        Raises :class:`StoreLocked` when another open store holds the directory, and
        :class:`StoreOpenFailed` for any other refusal (the directory is left as it is).
        """
        check_open_args(topic, partition)
        path = Path(root) / f"{topic}-{partition}"
        db = open_db(path)
        try:
            return cls(path, db)
        except InvalidChangelogRecord as exc:
            close_quietly(db)
            raise StoreOpenFailed(path, str(exc)) from None

    def close(self) -> None:
        """Release the database and its lock. Staged (unflushed) writes are dropped, as in a crash.

        The store cannot know whether the effects of staged writes are durable yet (DESIGN.md rule 3),
        so only ``flush`` makes state durable. Idempotent.
        """
        db = self._db
        if db is None:
            return
        # rocksdict keeps the database (and its LOCK) alive while any column family object or handle
        # is referenced, so drop ours before closing; iterators are never kept past a call.
        self._values = self._timers = None
        self._values_cf = self._timers_cf = None
        self._db = None
        self._fresh = None
        self._discard_staged()
        db.close()

    def __enter__(self) -> PartitionStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ reads
    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, staged writes included; None if absent."""
        staged = self._staged.get(key)
        record = staged[0] if staged is not None else self._disk_record(key)
        if record is None:
            return None
        # codec.record_value, inline (see _TIMER_HEADER)
        return record[_TIMER_HEADER:] if record[0] == _TAG_TIMER else record[1:]

    def due(self, now_ms: int, limit: int) -> list[tuple[bytes, int]]:
        """Up to ``limit`` ``(key, deadline_ms)`` with deadline <= ``now_ms``, in deadline order.

        Staged writes count (an expiry sweep must never read disk and miss the pending batch). Entries
        whose deadline no longer matches their record are skipped and their removal staged. Nothing is
        consumed: a timer keeps being returned until its key is re-armed, disarmed or deleted.
        """
        if limit <= 0 or now_ms < 0:  # deadlines are >= 0: nothing can be due before the epoch
            self._require_open()
            return []
        return self._scan(min(now_ms, codec.MAX_DEADLINE_MS), limit)

    def next_deadline(self) -> int | None:
        """The earliest armed deadline (staged writes included), or None when no timer is armed."""
        first = self._scan(codec.MAX_DEADLINE_MS, 1)
        return first[0][1] if first else None

    @property
    def changelog_offset(self) -> int | None:
        """The last changelog offset made durable locally by ``flush`` (None: nothing yet)."""
        return self._offset

    def pending_count(self) -> int:
        """Armed timers (keys with a deadline), staged writes included.

        A maintained counter (persisted in the meta at each flush); keys staged blind since the last call
        are settled first (one read each; a miss is answered by the bloom filters).
        """
        self._resolve()
        return self._armed

    # ------------------------------------------------------------------ staged writes
    def put(self, key: bytes, value: bytes, deadline_ms: int | None) -> bytes:
        """Stage ``key`` -> ``value`` with its one timer (None: no timer). Durable at the next flush.

        Returns the record stored, which is also the changelog value of the change
        (:func:`~stream_app.store.codec.changelog_value`), so the caller need not build it twice.
        """
        if self._db is None:
            self._require_open()
        # codec.changelog_value's layout, inline (see _TIMER_HEADER); any deadline it would refuse
        # goes to it, for its error.
        if deadline_ms is None:
            record = _NO_TIMER + value
        elif isinstance(deadline_ms, int) and 0 <= deadline_ms <= _MAX_DEADLINE_MS:
            record = _TIMER + deadline_ms.to_bytes(8, "big") + value
        else:
            record = codec.changelog_value(value, deadline_ms)  # raises InvalidDeadline
        self._processing_staged = True
        self._fresh = None
        self._stage(key, record, deadline_ms)
        return record

    def delete(self, key: bytes) -> None:
        """Stage the removal of ``key`` and its timer. Durable at the next flush."""
        self._require_open()
        self._processing_staged = True
        self._fresh = None
        self._stage(key, None, None)

    def flush(self, changelog_offset: int | None = None) -> None:
        """Write every staged change, the index changes and the changelog offset in one atomic batch.

        ``changelog_offset`` is the offset of the last changelog record that covers the staged state;
        None keeps the stored one (or, after ``apply_changelog``, stores the last applied offset).
        """
        self._require_open()
        self._fresh = None  # the restore is over (``apply_changelog`` restores it for its own batches)
        self._resolve()
        offset = changelog_offset if changelog_offset is not None else self._restore_offset
        if offset is None:
            offset = self._offset
        if not self._staged and not self._index_del and offset == self._offset:
            return
        timers_cf = self._timers_cf
        values_cf = self._values_cf
        batch = WriteBatch(raw_mode=True)
        index_del = self._index_del
        # Deletions first: a later put of the same index key in this batch must win (a key re-armed to
        # the deadline of an entry found to be a ghost earlier in this interval).
        for index in index_del:
            batch.delete(index, timers_cf)
        low_water = self._low_water
        put = batch.put
        # Index keys are built inline (codec.index_key's layout): this loop runs once per staged key.
        for key, (record, deadline, disk_deadline) in self._staged.items():
            if disk_deadline is not None and disk_deadline != deadline:
                batch.delete(disk_deadline.to_bytes(8, "big") + key, timers_cf)
            if record is None:
                batch.delete(key, values_cf)
            else:
                put(key, record, values_cf)
            if deadline is not None:
                index = deadline.to_bytes(8, "big") + key
                if deadline != disk_deadline or index in index_del:
                    put(index, b"", timers_cf)
                if deadline < low_water:
                    low_water = deadline
        batch.put(META_KEY, codec.encode_meta(offset, self._armed))
        flushed_at = time.time_ns() // 1_000_000  # wall clock: compaction runs on the broker's
        batch.put(FLUSHED_AT_KEY, flushed_at.to_bytes(8, "big"))
        try:
            self._db.write(batch)  # type: ignore[union-attr]  # _require_open checked it
        except Exception as exc:
            raise StoreError(f"flushing state store {self.path} failed: {exc}") from None
        self._offset = offset
        self.flushed_at_ms = flushed_at
        # Index entries written now may lie below the low-water mark a scan raised meanwhile.
        self._low_water = low_water
        self._discard_staged()

    # ------------------------------------------------------------------ internals
    def _require_open(self) -> None:
        if self._db is None:
            raise StoreClosed(f"state store {self.path} is closed")

    def _disk_record(self, key: bytes) -> bytes | None:
        cache = self._read_cache
        if key in cache:
            return cache[key]
        values = self._values
        if values is None:
            raise StoreClosed(f"state store {self.path} is closed")
        record: bytes | None = values.get(key)
        if len(cache) >= _READ_CACHE_MAX:
            cache.clear()
        cache[key] = record
        return record

    def _stage(self, key: bytes, record: bytes | None, deadline: int | None) -> None:
        staged = self._staged
        current = staged.get(key)
        if current is not None:
            if current[1] is not None:
                self._armed -= 1
            disk_deadline = current[2]
        elif key in self._read_cache:  # the runtime's get() before put() already read it
            disk = self._read_cache[key]
            if disk is None and record is None:
                return  # deleting what does not exist: nothing to write
            # codec.stored_deadline, inline (see _TIMER_HEADER)
            disk_deadline = (
                int.from_bytes(disk[1:_TIMER_HEADER], "big")
                if disk is not None and disk[0] == _TAG_TIMER
                else None
            )
            if disk_deadline is not None:
                self._armed -= 1
        else:
            # Not read yet: settle it at the next flush or pending_count() in one pass over the
            # batch (restore and blind writes), keeping this per-record path to dict operations.
            disk_deadline = _UNKNOWN
            self._unresolved.append(key)
        if deadline is not None:
            self._armed += 1
            heapq.heappush(self._staged_heap, (deadline, key))
        staged[key] = (record, deadline, disk_deadline)

    def _resolve(self) -> None:
        """Read the disk records of keys staged blind and settle the counter and their disk deadline."""
        keys = self._unresolved
        if not keys:
            return
        values = self._values
        if values is None:
            raise StoreClosed(f"state store {self.path} is closed")
        staged = self._staged
        stored_deadline = codec.stored_deadline
        armed = self._armed
        for key in keys:
            disk = values.get(key)
            record, deadline, _ = staged[key]
            if disk is None:
                if record is None:
                    del staged[key]  # deleting what does not exist: nothing to write
                    continue
                staged[key] = (record, deadline, None)
            else:
                disk_deadline = stored_deadline(disk)
                if disk_deadline is not None:
                    armed -= 1
                staged[key] = (record, deadline, disk_deadline)
        self._armed = armed
        keys.clear()

    def _discard_staged(self) -> None:
        self._staged.clear()
        self._staged_heap.clear()
        self._staged_due.clear()
        self._index_del.clear()
        self._read_cache.clear()
        self._unresolved.clear()
        self._restore_offset = None
        self._processing_staged = False
