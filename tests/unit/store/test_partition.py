"""PartitionStore on a real RocksDB in tmp_path: staging, timers, flush atomicity, restore, locking."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from stream_app.store import (
    InvalidChangelogRecord,
    InvalidDeadline,
    PartitionStore,
    RestoreOrderError,
    StoreClosed,
    StoreError,
    StoreLocked,
    changelog_value,
    parse_changelog_value,
)
from stream_app.store import replay as replay_module
from stream_app.store.codec import index_key

TOPIC = "app-flows-changelog"


def open_store(root: Path, partition: int = 0) -> PartitionStore:
    return PartitionStore.open(root, TOPIC, partition)


def raw_db(path: Path) -> Rdict:
    """The store's RocksDB opened directly, to inspect or damage what is on disk."""
    families = {"values": Options(raw_mode=True), "timers": Options(raw_mode=True)}
    return Rdict(str(path), Options(raw_mode=True), column_families=families)


def disk_index(path: Path) -> list[bytes]:
    db = raw_db(path)
    timers = db.get_column_family("timers")
    keys = [bytes(k) for k, _ in timers.items()]  # type: ignore[arg-type]  # raw mode: always bytes
    del timers
    db.close()
    return keys


# ---------------------------------------------------------------- round trips and staging
def test_put_get_round_trip_survives_reopen(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put(b"m1", b"state-1", 1_000)
    store.put(b"m2", b"", None)
    store.flush(3)
    store.close()
    store = open_store(tmp_path)
    assert store.get(b"m1") == b"state-1"
    assert store.get(b"m2") == b""
    assert store.get(b"absent") is None
    assert store.changelog_offset == 3
    assert store.pending_count() == 1
    assert store.path == tmp_path / f"{TOPIC}-0"
    store.close()


def test_partitions_are_separate_directories(tmp_path: Path) -> None:
    with open_store(tmp_path, 0) as p0, open_store(tmp_path, 1) as p1:
        p0.put(b"k", b"zero", 5)
        p0.flush(1)
        assert p1.get(b"k") is None
        assert p1.due(10, 10) == []


def test_staged_writes_are_visible_before_flush(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put(b"k", b"v1", 100)
        assert store.get(b"k") == b"v1"
        assert store.due(100, 10) == [(b"k", 100)]
        store.flush(0)
        store.put(b"k", b"v2", 200)
        assert store.get(b"k") == b"v2"
        store.delete(b"k")
        assert store.get(b"k") is None
        assert store.due(10_000, 10) == []
        assert store.pending_count() == 0


def test_close_drops_unflushed_writes_like_a_crash(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put(b"kept", b"1", 10)
    store.flush(1)
    store.put(b"lost", b"2", 20)
    store.delete(b"kept")
    store.close()
    with open_store(tmp_path) as store:
        assert store.get(b"kept") == b"1"
        assert store.get(b"lost") is None
        assert store.due(100, 10) == [(b"kept", 10)]
        assert store.pending_count() == 1
        assert store.changelog_offset == 1


def test_expiry_sweep_reads_the_pending_batch_not_only_disk(tmp_path: Path) -> None:
    """Regression for the data-loss shape of Faust/Quix expiry sweeps that scan disk and miss the batch.

    A timer re-armed later in the pending batch must not fire at its old disk deadline, a timer
    armed only in the pending batch must fire, and a key deleted in the batch must not fire.
    """
    with open_store(tmp_path) as store:
        store.put(b"rearmed", b"old", 100)
        store.put(b"deleted", b"x", 100)
        store.put(b"disarmed", b"x", 100)
        store.flush(1)
        store.put(b"rearmed", b"new", 500)
        store.delete(b"deleted")
        store.put(b"disarmed", b"x", None)
        store.put(b"only-staged", b"s", 150)
        assert store.due(200, 100) == [(b"only-staged", 150)]
        assert store.next_deadline() == 150
        assert store.due(500, 100) == [(b"only-staged", 150), (b"rearmed", 500)]
        assert store.pending_count() == 2


def test_ghost_cleanup_is_staged_so_a_crash_loses_no_timer(tmp_path: Path) -> None:
    """``due`` finds the old index entry of a re-armed key a ghost; removing it at once (outside the
    batch that re-arms) would lose the timer if the process dies before the flush."""
    store = open_store(tmp_path)
    store.put(b"k", b"v", 100)
    store.flush(1)
    store.put(b"k", b"v", 900)
    assert store.due(200, 10) == []
    store.close()  # crash: the re-arm was never flushed
    with open_store(tmp_path) as store:
        assert store.due(200, 10) == [(b"k", 100)]


# ---------------------------------------------------------------- timers
def test_due_is_in_deadline_order_with_limit_and_not_consuming(tmp_path: Path) -> None:
    rng = random.Random(7)
    expected = []
    with open_store(tmp_path) as store:
        for i in range(300):
            key = f"msg-{i:04d}".encode()
            deadline = rng.randrange(0, 1_000)
            expected.append((deadline, key))
            store.put(key, b"v", deadline)
            if i == 150:
                store.flush(i)  # half on disk, half staged: due merges both
        expected.sort()
        due_at_500 = [(k, d) for d, k in expected if d <= 500]
        assert store.due(500, 10_000) == due_at_500
        assert store.due(500, 7) == due_at_500[:7]
        assert store.due(500, 7) == due_at_500[:7]  # nothing is consumed by looking
        assert store.due(500, 0) == []
        assert store.due(-1, 10) == []
        assert store.due(2**70, 1) == due_at_500[:1]  # far future: clamped, not an overflow
        store.flush(300)
        assert store.due(500, 10_000) == due_at_500
        assert store.next_deadline() == expected[0][0]


def test_same_deadline_orders_by_key(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        for key in (b"c", b"a", b"b"):
            store.put(key, b"", 42)
        store.flush()
        store.put(b"aa", b"", 42)
        assert store.due(42, 10) == [(b"a", 42), (b"aa", 42), (b"b", 42), (b"c", 42)]
        assert store.due(41, 10) == []


def test_deadline_changes(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put(b"k", b"v", 1_000)
        store.flush(1)
        store.put(b"k", b"v", 200)  # earlier
        assert store.due(500, 10) == [(b"k", 200)]
        store.flush(2)
        assert store.due(500, 10) == [(b"k", 200)]
        store.put(b"k", b"v", 5_000)  # later
        store.flush(3)
        assert store.due(4_999, 10) == []
        assert store.next_deadline() == 5_000
        store.put(b"k", b"v", None)  # disarmed, state kept
        store.flush(4)
        assert store.next_deadline() is None
        assert store.pending_count() == 0
        assert store.get(b"k") == b"v"
        store.put(b"k", b"v", 200)  # re-armed back to a deadline it had before
        store.flush(5)
        assert store.due(300, 10) == [(b"k", 200)]
        assert store.pending_count() == 1
        # The disk index holds exactly one entry for the key: old entries were removed at each flush.
        path = store.path
    assert disk_index(path) == [index_key(200, b"k")]


def test_rearm_to_the_deadline_of_a_ghost_found_earlier(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put(b"k", b"v", 100)
        store.flush(1)
        store.put(b"k", b"v", 300)
        assert store.due(150, 10) == []  # (100, k) found a ghost and its removal staged
        store.put(b"k", b"v", 100)  # back to 100 within the same batch
        assert store.due(150, 10) == [(b"k", 100)]
        store.flush(2)
        assert store.due(150, 10) == [(b"k", 100)]
        path = store.path
    assert disk_index(path) == [index_key(100, b"k")]


def test_ghost_on_disk_is_skipped_and_removed_at_flush(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put(b"k", b"v", 500)
        store.put(b"gone", b"v", 50)
        store.flush(1)
        path = store.path
    # Damage the index the way a lazy-cancel store leaves it: entries whose record moved on or vanished.
    db = raw_db(path)
    timers = db.get_column_family("timers")
    values = db.get_column_family("values")
    timers[index_key(100, b"k")] = b""
    del values[b"gone"]
    del timers, values
    db.close()
    with open_store(tmp_path) as store:
        assert store.due(1_000, 10) == [(b"k", 500)]
        store.flush()
    assert disk_index(path) == [index_key(500, b"k")]


def test_firing_all_timers_drains_the_index(tmp_path: Path) -> None:
    """The runtime's loop: due -> decide -> re-arm or delete -> flush, until nothing is due."""
    with open_store(tmp_path) as store:
        for i in range(5_000):
            store.put(i.to_bytes(4, "big"), b"s", 1_000 + i)
        store.flush(0)
        fired = []
        now = 10_000
        while batch := store.due(now, 700):
            for key, deadline in batch:
                fired.append(deadline)
                if int.from_bytes(key, "big") % 2:
                    store.delete(key)
                else:
                    store.put(key, b"ended", None)  # keep the state, disarm the timer
            store.flush()
        assert fired == sorted(fired) == list(range(1_000, 6_000))
        assert store.pending_count() == 0
        assert store.next_deadline() is None
        store.put(b"late", b"s", 5)  # below everything fired so far: still found
        assert store.due(now, 10) == [(b"late", 5)]
        store.flush()
        assert store.due(now, 10) == [(b"late", 5)]


def test_pending_count_tracks_arming_and_is_persisted(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put(b"a", b"", 1)
    store.put(b"b", b"", 2)
    store.put(b"c", b"", None)
    store.put(b"a", b"", 3)  # re-arm: still one timer
    store.delete(b"nothing-here")
    assert store.pending_count() == 2
    store.flush(9)
    store.delete(b"b")
    store.put(b"c", b"", 4)
    assert store.pending_count() == 2
    store.close()
    with open_store(tmp_path) as store:
        assert store.pending_count() == 2
        store.delete(b"a")
        store.delete(b"a")
        assert store.pending_count() == 1


def test_bad_deadline_is_refused_and_nothing_staged(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        for bad in (-5, 2**63):
            with pytest.raises(InvalidDeadline, match="outside"):
                store.put(b"k", b"v", bad)
        assert store.get(b"k") is None
        assert store.pending_count() == 0


@pytest.mark.parametrize("deadline", [None, 0, 1, 1_767_225_600_000, 2**63 - 1])
@pytest.mark.parametrize("value", [b"", b"v", bytes(range(256)) * 2])
def test_records_are_the_codecs_layout(tmp_path: Path, deadline: int | None, value: bytes) -> None:
    """The store builds and splits records inline (compiled, a codec call each cost ~1 us): the
    same bytes as the codec's, read back the same way, the disk deadline parsed as the codec does."""
    with open_store(tmp_path) as store:
        assert store.put(b"k", value, deadline) == changelog_value(value, deadline)
        assert store.get(b"k") == value
        store.flush(0)
        assert store.get(b"k") == value  # from disk now
        assert store.pending_count() == (deadline is not None)
        # Re-armed after a read from disk: the old deadline is parsed from the disk record, so the
        # counter and the index follow it.
        assert store.put(b"k", value + b"!", 7) == changelog_value(value + b"!", 7)
        assert store.pending_count() == 1
        store.flush(1)
        assert store.get(b"k") == value + b"!"
        assert store.due(10, 5) == [(b"k", 7)]
    assert disk_index(tmp_path / f"{TOPIC}-0") == [index_key(7, b"k")]


# ---------------------------------------------------------------- flush atomicity and crashes
def test_flush_writes_values_index_and_offset_together(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put(b"a", b"1", 10)
    store.flush(100)
    store.put(b"a", b"2", 20)
    store.put(b"b", b"3", 30)
    store.flush(101)
    store.put(b"c", b"4", 40)  # never flushed
    store.close()
    with open_store(tmp_path) as store:
        assert (store.get(b"a"), store.get(b"b"), store.get(b"c")) == (b"2", b"3", None)
        assert store.due(100, 10) == [(b"a", 20), (b"b", 30)]
        assert store.changelog_offset == 101
        assert store.pending_count() == 2


def test_flush_without_offset_keeps_the_stored_one(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        assert store.changelog_offset is None
        store.put(b"a", b"1", None)
        store.flush()
        assert store.changelog_offset is None
        store.flush(5)
        store.put(b"a", b"2", None)
        store.flush()
        assert store.changelog_offset == 5


_CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from stream_app.store import PartitionStore
    store = PartitionStore.open(Path(sys.argv[1]), "app-flows-changelog", 0)
    for i in range(2_000):
        store.put(b"k%d" % i, b"v%d" % i, 1_000 + i)
    store.flush(41)
    for i in range(2_000, 3_000):
        store.put(b"k%d" % i, b"v%d" % i, 1_000 + i)
    print("flushed", flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit: the LOCK file stays behind
    store.close()
    """
)


@pytest.mark.parametrize("how", ["kill", "close"])
def test_reopen_after_an_unclean_stop(tmp_path: Path, how: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(tmp_path), how],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert "flushed" in proc.stdout, proc.stderr
    assert proc.returncode == (-9 if how == "kill" else 0)
    with open_store(tmp_path) as store:  # never wiped: the flushed state is all there
        assert store.changelog_offset == 41
        assert store.pending_count() == 2_000
        assert store.get(b"k1999") == b"v1999"
        assert store.get(b"k2000") is None
        due = store.due(10_000, 5_000)
        assert len(due) == 2_000
        assert due[0] == (b"k0", 1_000)


# ---------------------------------------------------------------- changelog restore
def _changelog(n: int, seed: int = 1) -> list[tuple[bytes, bytes | None, int]]:
    """A changelog partition: updates, re-arms, disarms and tombstones of 200 keys, offsets 0..n-1."""
    rng = random.Random(seed)
    records: list[tuple[bytes, bytes | None, int]] = []
    for offset in range(n):
        key = f"m{rng.randrange(200)}".encode()
        roll = rng.random()
        if roll < 0.15:
            records.append((key, None, offset))
        elif roll < 0.25:
            records.append((key, changelog_value(b"ended-%d" % offset, None), offset))
        else:
            records.append((key, changelog_value(b"s-%d" % offset, rng.randrange(10_000)), offset))
    return records


def _model(records: list[tuple[bytes, bytes | None, int]]) -> dict[bytes, bytes]:
    model: dict[bytes, bytes] = {}
    for key, record, _ in records:
        if record is None:
            model.pop(key, None)
        else:
            model[key] = record
    return model


def _assert_matches(store: PartitionStore, model: dict[bytes, bytes]) -> None:
    from stream_app.store import parse_changelog_value

    expected_due = sorted(
        (d, k) for k, rec in model.items() if (d := parse_changelog_value(rec)[1]) is not None
    )
    assert store.due(10_000, 100_000) == [(k, d) for d, k in expected_due]
    assert store.pending_count() == len(expected_due)
    for key in (f"m{i}".encode() for i in range(200)):
        rec = model.get(key)
        assert store.get(key) == (None if rec is None else parse_changelog_value(rec)[0])


def test_restore_from_changelog_with_tombstones(tmp_path: Path) -> None:
    records = _changelog(3_000)
    with open_store(tmp_path) as store:
        for key, record, offset in records:
            store.apply_changelog(key, record, offset)
        _assert_matches(store, _model(records))  # visible while staged
        store.flush()
        assert store.changelog_offset == 2_999
    with open_store(tmp_path) as store:
        _assert_matches(store, _model(records))


def test_a_changelog_record_without_a_key_is_refused_and_the_restore_goes_on_regression(
    tmp_path: Path,
) -> None:
    # The pure build staged it, and the flush that ends the restore failed on it, on every try.
    records = _changelog(10)
    with open_store(tmp_path) as store:
        with pytest.raises(InvalidChangelogRecord, match="no key"):
            store.apply_changelog(None, changelog_value(b"v", None), 0)
        for key, record, offset in records:
            store.apply_changelog(key, record, offset)
        store.flush()
        _assert_matches(store, _model(records))


@pytest.mark.parametrize("filter_bytes", [1, 64, 1 << 20])  # saturated, colliding, sparse
def test_restore_into_an_empty_store_is_exact_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filter_bytes: int
) -> None:
    # A restore that starts on an empty store skips the read of keys it has not staged yet; keys it
    # wrote in an earlier batch (and filter collisions) must still be read: exact count, no ghosts.
    monkeypatch.setattr(replay_module, "RESTORE_BATCH", 37)
    monkeypatch.setattr(replay_module, "_FRESH_FILTER_BYTES", filter_bytes)
    monkeypatch.setattr(replay_module, "_FRESH_FILTER_MASK", filter_bytes * 8 - 1)
    records = _changelog(3_000, seed=5)
    with open_store(tmp_path) as store:
        for key, record, offset in records:
            store.apply_changelog(key, record, offset)
        store.flush()
        _assert_matches(store, _model(records))
    model = _model(records)
    armed = sorted(
        index_key(d, k) for k, rec in model.items() if (d := parse_changelog_value(rec)[1]) is not None
    )
    assert disk_index(store.path) == armed
    with open_store(tmp_path) as store:
        _assert_matches(store, _model(records))


def test_restore_into_a_non_empty_store_reads_every_old_record(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put(b"m1", b"old", 5)
        store.flush()  # no changelog offset: a restore still starts from the beginning
    records = [(b"m1", changelog_value(b"new", 7), 0), (b"m2", changelog_value(b"x", 9), 1)]
    with open_store(tmp_path) as store:
        for key, record, offset in records:
            store.apply_changelog(key, record, offset)
        store.flush()
        assert store.pending_count() == 2
        assert store.due(100, 10) == [(b"m1", 7), (b"m2", 9)]
    assert disk_index(store.path) == [index_key(7, b"m1"), index_key(9, b"m2")]


def test_restore_only_the_tail_from_the_stored_offset(tmp_path: Path) -> None:
    records = _changelog(4_000, seed=3)
    with open_store(tmp_path) as store:
        for key, record, offset in records[:2_500]:
            store.apply_changelog(key, record, offset)
        store.flush()
    with open_store(tmp_path) as store:
        start = store.changelog_offset
        assert start == 2_499
        # A consumer seeking to changelog_offset + 1 reads only the tail; one that re-reads an overlap
        # (records at or below the stored offset) must not move state backwards.
        for key, record, offset in records[2_000:]:
            store.apply_changelog(key, record, offset)
        store.flush()
        assert store.changelog_offset == 3_999
        _assert_matches(store, _model(records))


def test_restore_writes_batches_with_their_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "RESTORE_BATCH", 100)
    store = open_store(tmp_path)
    for i in range(250):
        store.apply_changelog(b"k%d" % i, changelog_value(b"v", i), 1_000 + i)
    assert store.changelog_offset == 1_199  # two batches durable, the last 50 staged
    store.close()  # a crash mid-restore: the next restore resumes after the durable batch
    with open_store(tmp_path) as store:
        assert store.changelog_offset == 1_199
        assert store.pending_count() == 200
        assert store.get(b"k199") == b"v"
        assert store.get(b"k200") is None


def test_restore_refuses_a_bad_record_and_continues(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        with pytest.raises(InvalidChangelogRecord, match="unknown layout byte"):
            store.apply_changelog(b"k", b'{"not": "ours"}', 0)
        store.apply_changelog(b"k", changelog_value(b"v", 5), 1)
        store.flush()
        assert store.due(5, 10) == [(b"k", 5)]
        assert store.changelog_offset == 1


def test_restore_refuses_while_processing_writes_are_staged(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put(b"k", b"v", 1)
        with pytest.raises(RestoreOrderError, match="flush staged"):
            store.apply_changelog(b"k", changelog_value(b"w", 2), 0)
        store.flush()
        store.apply_changelog(b"k", changelog_value(b"w", 2), 0)
        assert store.get(b"k") == b"w"


# ---------------------------------------------------------------- locking and misuse
def test_second_open_in_the_same_process_is_refused_until_close(tmp_path: Path) -> None:
    first = open_store(tmp_path)
    with pytest.raises(StoreLocked, match="locked by another open store") as info:
        open_store(tmp_path)
    assert "\n" not in str(info.value)
    first.due(10, 10)
    first.next_deadline()  # scans leave no iterator behind that would keep the lock
    first.close()
    first.close()  # idempotent
    with open_store(tmp_path) as again:
        assert again.get(b"x") is None


def test_lock_held_by_another_process_gives_a_clear_error(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from stream_app.store import PartitionStore;"
            f"s = PartitionStore.open(Path(sys.argv[1]), {TOPIC!r}, 0); print('open', flush=True);"
            "sys.stdin.readline(); s.close()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLocked, match="STREAM_APP_STATE_DIR"):
            open_store(tmp_path)
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()
    with open_store(tmp_path) as store:
        assert store.pending_count() == 0


def test_use_after_close_is_a_clear_error(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.close()
    for call in (
        lambda: store.get(b"k"),
        lambda: store.due(1, 1),
        lambda: store.next_deadline(),
        lambda: store.put(b"k", b"v", 1),
        lambda: store.delete(b"k"),
        lambda: store.apply_changelog(b"k", None, 1),
        lambda: store.flush(1),
    ):
        with pytest.raises(StoreClosed, match="is closed"):
            call()


@pytest.mark.parametrize(("topic", "partition"), [("../etc", 0), ("a/b", 0), ("", 0), ("ok", -1)])
def test_bad_location_is_refused(tmp_path: Path, topic: str, partition: int) -> None:
    with pytest.raises(StoreError):
        PartitionStore.open(tmp_path, topic, partition)
    assert os.listdir(tmp_path) == []


def test_unopenable_directory_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / f"{TOPIC}-0"
    path.mkdir()
    (path / "CURRENT").write_text("MANIFEST-999999\n")  # points at a manifest that does not exist
    with pytest.raises(StoreError, match="cannot open state store") as info:
        open_store(tmp_path)
    assert "\n" not in str(info.value)
    assert (path / "CURRENT").read_text() == "MANIFEST-999999\n"  # not wiped


# ---------------------------------------------------------------- scale
def test_many_keys(tmp_path: Path) -> None:
    n = 60_000
    rng = random.Random(11)
    deadlines = {f"{i:08d}".encode(): rng.randrange(1_000_000) for i in range(n)}
    with open_store(tmp_path) as store:
        for i, (key, deadline) in enumerate(deadlines.items()):
            store.put(key, b"s" * 40, deadline)
            if i % 10_000 == 9_999:
                store.flush(i)
        store.flush(n)
        assert store.pending_count() == n
        expected = sorted((d, k) for k, d in deadlines.items())
        assert store.next_deadline() == expected[0][0]
        got = store.due(500_000, n)
        assert got == [(k, d) for d, k in expected if d <= 500_000]
        for key, _ in got:
            store.delete(key)
        store.flush(n + 1)
        assert store.pending_count() == n - len(got)
        assert store.due(1_000_000, 3) == [(k, d) for d, k in expected[len(got) : len(got) + 3]]


# ------------------------------------------------------------------- keys_after (channel-control sweeps)


def test_keys_after_walks_every_key_a_page_at_a_time_staged_writes_included(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        for i in range(10):
            store.put(f"k{i}".encode(), b"v", None if i % 2 else 1000 + i)
        store.flush(0)
        store.delete(b"k3")  # staged deletion: no longer a key
        store.put(b"k35", b"v", None)  # staged insertion between disk keys
        store.put(b"k99", b"v", 5)  # staged insertion after the last disk key
        seen: list[bytes] = []
        after: bytes | None = None
        pages = 0
        while True:
            keys, more = store.keys_after(after, 3)
            pages += 1
            assert keys == sorted(keys) and len(keys) <= 3 + 1  # a page may add staged keys in its range
            seen += keys
            if keys:
                after = keys[-1]
            if not more:
                break
        expected = sorted([f"k{i}".encode() for i in range(10) if i != 3] + [b"k35", b"k99"])
        assert seen == expected
        assert pages >= 3
        assert store.keys_after(b"k99", 3) == ([], False)
        assert store.keys_after(None, 0) == ([], True)


def test_due_sees_disk_timers_in_a_compiled_build_regression(tmp_path: Path) -> None:
    # Compiled, _scan's ReadOptions was released after its last use while the iterator still read
    # the upper bound it owns: a reopened store reported no timer at all. It is kept alive now.
    with PartitionStore.open(tmp_path, "flows", 0) as store:
        store.put(b"a", b"x", 5)
        store.put(b"b", b"y", 7)
        store.flush(1)
    with PartitionStore.open(tmp_path, "flows", 0) as store:
        assert store.next_deadline() == 5
        assert store.due(10, 10) == [(b"a", 5), (b"b", 7)]


def test_reset_forgets_records_timers_and_the_offset_regression(tmp_path: Path) -> None:
    """A store reset (its restore skipped records on a stale committed offset) replays from 0."""
    with open_store(tmp_path) as store:
        for i in range(5):
            store.put(f"k{i}".encode(), b"v", 1000 + i)
        store.put(b"\xff\xff\xffz", b"v", None)  # a key above any fixed end of a range
        store.flush(41)
        store.delete(b"k0")  # staged, dropped by the reset
        store.reset()
        assert store.changelog_offset is None and store.pending_count() == 0
        assert store.next_deadline() is None and store.get(b"k1") is None
        assert store.keys_after(None, 10) == ([], False)
        store.apply_changelog(b"k9", changelog_value(b"w", 7), 0)  # a restore from the start
        store.flush()
    with open_store(tmp_path) as again:
        assert again.changelog_offset == 0 and again.due(10, 10) == [(b"k9", 7)]
        assert again.keys_after(None, 10) == ([b"k9"], False)
