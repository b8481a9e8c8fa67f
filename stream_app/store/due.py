"""Due timers of a partition store: staged timers and the disk index merged in deadline order.

Why no in-memory wheel for the next minutes (DESIGN.md's two-tier target): measured first, it would buy
nothing here. With 10M pending timers (``bench/store.py --count 10000000``) a due-scan turn takes
p99 1.2 ms, p99 firing lateness at 10,000 timers/s is 2 ms (target 50 ms), and firing costs are the
state read ``decide`` needs anyway and the write-back, not the index scan (a scan with the records
already read costs about 2 us per timer). A wheel would add a second copy of the near-term index to
keep coherent with staged writes, restores and crashes, for no measurable gain; revisit if a profile
of the runtime ever shows ``due`` on top.
"""

from __future__ import annotations

import bisect
import heapq
from pathlib import Path

from mypy_extensions import mypyc_attr, trait
from rocksdict import Rdict, ReadOptions

from stream_app.store import codec
from stream_app.store.errors import StoreClosed

#: ``_staged`` entry: (record or None for a deletion, its deadline, the deadline of the record on disk
#: when the key was first staged). The last one tells ``flush`` which index entry to remove.
Staged = tuple[bytes | None, int | None, int | None]


def _keep_alive(_: object) -> None:
    """Hold a reference up to this call (see ``DueScan._scan``)."""


@trait
@mypyc_attr(allow_interpreted_subclasses=True)  # PartitionStore allows them (see there)
class DueScan:
    """The due-timer merge of :class:`~stream_app.store.partition.PartitionStore` (its base class).

    Kept apart from the store's writes and restore: it reads the staged view and the index, and
    its only writes are ghost removals staged for the next flush and the low-water mark.
    """

    path: Path
    _timers: Rdict | None
    _staged: dict[bytes, Staged]
    _staged_heap: list[tuple[int, bytes]]
    _staged_due: list[tuple[int, bytes]]
    _index_del: set[bytes]
    _low_water: int

    def _disk_record(self, key: bytes) -> bytes | None:
        raise NotImplementedError  # PartitionStore's

    def _scan(self, now_ms: int, limit: int) -> list[tuple[bytes, int]]:
        """Merge staged timers and the disk index up to ``now_ms``; see :meth:`due`."""
        timers = self._timers
        if timers is None:
            raise StoreClosed(f"state store {self.path} is closed")
        staged = self._staged
        # The iterator below is local on purpose: a live iterator keeps the database (and its LOCK)
        # open, so none may outlive this call.

        # Staged side: heap entries that came due join the sorted list (two sorted runs: timsort merges
        # them in linear time); entries there may be stale (key re-armed or deleted since) and are
        # skipped on the fly.
        heap = self._staged_heap
        if heap and heap[0][0] <= now_ms:
            popped = []
            while heap and heap[0][0] <= now_ms:
                popped.append(heapq.heappop(heap))
            self._staged_due = sorted(self._staged_due + popped) if self._staged_due else popped
        staged_due = self._staged_due
        cut = bisect.bisect_left(staged_due, (now_ms + 1, b""))
        s_pos = 0

        def next_staged() -> tuple[int, bytes] | None:
            nonlocal s_pos
            while s_pos < cut:
                item = staged_due[s_pos]
                s_pos += 1
                entry = staged.get(item[1])
                if entry is not None and entry[1] == item[0]:
                    return item
            return None

        # Disk side: the index from the low-water mark up to now (upper bound exclusive). rocksdict
        # 0.3.29's set_iterate_lower_bound sets the UPPER bound, so we seek to the low-water mark.
        read_opts = ReadOptions()
        read_opts.set_iterate_upper_bound(codec.index_key(now_ms + 1, b""))
        it = timers.iter(read_opts)
        it.seek(codec.index_key(self._low_water, b""))
        index_del = self._index_del
        disk_record = self._disk_record
        stored_deadline = codec.stored_deadline
        floor: int | None = None  # every disk entry below it is dead
        live_disk_found = False

        def next_disk() -> tuple[int, bytes] | None:
            nonlocal floor, live_disk_found
            while it.valid():
                index = it.key()
                it.next()
                deadline = int.from_bytes(index[:8], "big")
                key = index[8:]
                if index in index_del:
                    live = False
                else:
                    entry = staged.get(key)
                    if entry is not None:
                        live = entry[1] == deadline
                    else:
                        record = disk_record(key)
                        live = record is not None and stored_deadline(record) == deadline
                    if not live:
                        # A ghost: its record moved on. Stage its removal; never delete outside a
                        # flush, where the record change that made it a ghost becomes durable too.
                        index_del.add(index)
                if live:
                    if not live_disk_found:
                        live_disk_found = True
                        floor = deadline
                    return deadline, key
                if not live_disk_found:
                    floor = deadline
            if not live_disk_found:
                floor = now_ms + 1  # exhausted: nothing live at or below now on disk
            return None

        out: list[tuple[bytes, int]] = []
        seen: set[bytes] = set()
        staged_item = next_staged()
        disk_item = next_disk()
        while len(out) < limit and (staged_item is not None or disk_item is not None):
            if disk_item is None or (staged_item is not None and staged_item <= disk_item):
                deadline, key = staged_item  # type: ignore[misc]  # not None on this branch
                staged_item = next_staged()
            else:
                deadline, key = disk_item
                disk_item = next_disk()
            if key not in seen:
                seen.add(key)
                out.append((key, deadline))
        # The iterator reads its upper bound from memory ``read_opts`` owns, so the options must
        # outlive every use of it. CPython keeps a local until the function returns; a compiled
        # build drops it after its last use, and the scan then saw no disk timer at all. This use
        # keeps it: every call of next_disk() must stay above this line.
        _keep_alive(read_opts)
        if floor is not None and floor > self._low_water:
            self._low_water = floor
        return out
