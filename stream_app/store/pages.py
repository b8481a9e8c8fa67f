"""Every key of a partition store, a page at a time: the walk of the channel-control sweep.

A base of :class:`~stream_app.store.partition.PartitionStore`, kept apart from its writes and
restore: it only reads the values column family (keys only) and the staged view.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr, trait
from rocksdict import Rdict

from stream_app.store.due import Staged


@trait
@mypyc_attr(allow_interpreted_subclasses=True)  # PartitionStore allows them (see there)
class KeyPages:
    """``keys_after``: resume a walk of the store's keys after the last key of the previous page."""

    _values: Rdict | None
    _staged: dict[bytes, Staged]

    def _require_open(self) -> None:
        raise NotImplementedError  # PartitionStore's

    def keys_after(self, after: bytes | None, limit: int) -> tuple[list[bytes], bool]:
        """Up to ``limit`` keys holding a record (staged writes included), in key order, after ``after``.

        Returns the keys and whether more may follow: a caller walks the whole store a page at a
        time (the channel-control sweep), resuming after the last key it got. A page reads ``limit``
        disk keys at most (one range scan of the values column family, no value copied) plus the
        staged keys in its range.
        """
        values = self._values
        if values is None or limit <= 0:
            self._require_open()
            return [], limit <= 0
        it = values.iter()
        if after is None:
            it.seek_to_first()
        else:
            it.seek(after)
            if it.valid() and it.key() == after:
                it.next()
        disk: list[bytes] = []
        while it.valid() and len(disk) < limit:
            disk.append(it.key())
            it.next()
        more = it.valid()
        del it  # a live iterator keeps the database (and its LOCK) open
        staged = self._staged
        last = disk[-1] if more else None
        keys = {k for k in disk if k not in staged or staged[k][0] is not None}
        keys.update(
            k
            for k, entry in staged.items()
            if entry[0] is not None and (after is None or k > after) and (last is None or k <= last)
        )
        page = sorted(keys)
        return page, more
