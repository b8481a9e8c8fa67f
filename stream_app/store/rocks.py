"""The RocksDB side of a partition store: its column families, tuning, and opening one.

Every store of the process shares one block cache and one memtable budget (an instance owns many
partitions, and its memory must not grow with their number); :func:`options` holds the tuning of
each column family for this workload, with the measurements behind it.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, DBCompressionType, Options, Rdict, WriteBufferManager

from stream_app.store.errors import StoreError, StoreLocked, StoreOpenFailed

META_KEY = b"meta"
#: Wall-clock ms (8 bytes, big-endian) of the store's last flush, beside ``META_KEY``: how long the
#: store has been away from its changelog (runtime/restore.py rebuilds one away too long).
FLUSHED_AT_KEY = b"flushed-at"
VALUES_CF = "values"
TIMERS_CF = "timers"

#: Kafka topic names are ``[a-zA-Z0-9._-]{1,249}``; anything else must not become a directory name.
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")

# Memory budget shared by every store of the process (an instance owns many partitions): RSS must stay
# well under 1 GiB with 10 million pending timers (issue 3), so block cache and memtables are capped
# per process, not per partition.
#: Block cache for data, index and filter blocks (index/filter blocks are charged to it, see below).
_BLOCK_CACHE_BYTES = 128 << 20
#: All memtables of all stores together; RocksDB flushes the largest when the total passes this.
_MEMTABLE_BUDGET_BYTES = 192 << 20
_shared: tuple[Cache, WriteBufferManager] | None = None


def _shared_memory() -> tuple[Cache, WriteBufferManager]:
    global _shared
    if _shared is None:
        _shared = (Cache(_BLOCK_CACHE_BYTES), WriteBufferManager(_MEMTABLE_BUDGET_BYTES, False))
    return _shared


def options(*, values: bool) -> Options:
    """RocksDB options for this workload: point reads by key, range scans by time, many deletions.

    The WAL stays ON (rocksdict's default) and is not fsynced per write: a killed process loses nothing
    that ``flush`` returned from (the WAL is in the OS page cache), and a machine crash can lose only
    the newest batches, each entirely (the WAL replays whole batches), with the changelog offset inside
    the same batch, so the runtime replays exactly the lost tail from the changelog. Turning the WAL off
    (Kafka Streams does) would also keep batches atomic, but every crash would then lose everything
    since the last memtable flush: minutes of state to restore instead of a few batches.
    """
    cache, memtables = _shared_memory()
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    # Two shared cores on the target machines: one flush plus one compaction at a time is enough.
    opts.set_max_background_jobs(2)
    opts.set_write_buffer_manager(memtables)
    # With three column families a quiet one (meta) would pin old WAL files forever; cap the total so
    # RocksDB flushes it and recycles the log.
    opts.set_max_total_wal_size(64 << 20)
    opts.set_keep_log_file_num(2)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    # Index and filter blocks stay in the table readers, outside the block cache: about 1.25 bytes of
    # filter plus ~3 bytes of index per key (~40 MiB at 10M keys). Charging them to the cache looked
    # tidier but was measured pathological: once compaction builds large bottom-level files, a filter
    # block outgrows one shard of the LRU cache, is never kept, and every point read re-reads it from
    # disk (insert fell from 86k/s to 6k/s, 11 -> 151 us of main-thread CPU per put, at 2M keys).
    table.set_cache_index_and_filter_blocks(False)
    if values:
        # Every put first reads the old record (for the timer count and the old index entry); most
        # puts of new messages miss, and a bloom filter answers a miss without a disk read.
        table.set_bloom_filter(10, False)
        # The same for the memtable, where a fresh restore or a burst of new messages sits: without
        # it a miss walks a skiplist of up to 32 MiB of entries.
        opts.set_memtable_prefix_bloom_ratio(0.1)
        opts.set_memtable_whole_key_filtering(True)
        opts.set_write_buffer_size(32 << 20)
        opts.set_compression_type(DBCompressionType.lz4())
    else:
        # The time index is a queue: entries are written, come due, are deleted. Compact SST files
        # dense with tombstones early so due-scans do not wade through them (128-entry window, half
        # deleted -> compact).
        opts.add_compact_on_deletion_collector_factory(128, 64, 0.5)
        opts.set_write_buffer_size(16 << 20)
        # Index entries are 8 bytes of time + the key; nothing left to compress worth the CPU.
        opts.set_compression_type(DBCompressionType.none())
    opts.set_table_cache_num_shard_bits(4)
    opts.set_block_based_table_factory(table)
    return opts


def check_open_args(topic: str, partition: int) -> None:
    if not _TOPIC_RE.fullmatch(topic):
        raise StoreError(f"topic {topic!r} is not a Kafka topic name ([A-Za-z0-9._-], 1..249 chars)")
    if not isinstance(partition, int) or partition < 0:
        raise StoreError(f"partition {partition!r} must be an int >= 0")


def open_db(path: Path) -> Rdict:
    """Open (creating if needed) the database at ``path`` with its column families.

    Raises :class:`StoreLocked` when another open store holds the directory, and
    :class:`StoreOpenFailed` for any other refusal (the directory is left as it is).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreOpenFailed(path, f"cannot create the directory ({exc.strerror})") from None
    try:
        return Rdict(
            str(path),
            options(values=False),
            column_families={VALUES_CF: options(values=True), TIMERS_CF: options(values=False)},
        )
    except Exception as exc:  # rocksdict raises a bare Exception carrying RocksDB's status text
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "lock" in detail.lower():
            raise StoreLocked(path, detail) from None
        raise StoreOpenFailed(path, detail) from None


def close_quietly(db: Rdict) -> None:
    with contextlib.suppress(Exception):  # best effort on an already failing open
        db.close()
