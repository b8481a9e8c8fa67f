"""Random operation sequences against a dict model: staged view, durable view, timers and counter agree.

Few keys and a narrow deadline range on purpose, so that re-arms, ghosts, equal deadlines, deletes of
staged keys and crashes between flushes happen in almost every example.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.store import PartitionStore, changelog_value

KEYS = [b"a", b"b", b"c", b"d", b"ee"]
deadlines = st.one_of(st.none(), st.integers(0, 30))
ops = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.binary(max_size=6), deadlines),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("due"), st.integers(0, 35), st.integers(1, 6)),
    st.tuples(st.just("flush"), st.one_of(st.none(), st.integers(0, 1_000))),
    st.tuples(st.just("crash")),
    st.tuples(st.just("get"), st.sampled_from(KEYS)),
)

Model = dict[bytes, tuple[bytes, int | None]]


def expected_due(view: Model, now: int, limit: int) -> list[tuple[bytes, int]]:
    armed = sorted((d, k) for k, (_, d) in view.items() if d is not None and d <= now)
    return [(k, d) for d, k in armed[:limit]]


def check_all(store: PartitionStore, view: Model, offset: int | None) -> None:
    armed = [d for _, d in view.values() if d is not None]
    assert store.pending_count() == len(armed)
    assert store.next_deadline() == (min(armed) if armed else None)
    assert store.due(10_000, 100) == expected_due(view, 10_000, 100)
    assert store.changelog_offset == offset
    for key in KEYS:
        assert store.get(key) == (view[key][0] if key in view else None)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=40))
def test_store_matches_model(sequence: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = PartitionStore.open(root, "flows", 0)
        view: Model = {}
        durable: Model = {}
        offset: int | None = None
        try:
            for op in sequence:
                kind = op[0]
                if kind == "put":
                    _, key, value, deadline = op
                    store.put(key, value, deadline)  # type: ignore[arg-type]
                    view[key] = (value, deadline)  # type: ignore[index, assignment]
                elif kind == "delete":
                    store.delete(op[1])  # type: ignore[arg-type]
                    view.pop(op[1], None)  # type: ignore[call-overload]
                elif kind == "due":
                    now, limit = op[1], op[2]
                    assert store.due(now, limit) == expected_due(view, now, limit)  # type: ignore[arg-type]
                elif kind == "flush":
                    store.flush(op[1])  # type: ignore[arg-type]
                    durable = dict(view)
                    offset = op[1] if op[1] is not None else offset  # type: ignore[assignment]
                elif kind == "crash":
                    store.close()
                    store = PartitionStore.open(root, "flows", 0)
                    view = dict(durable)
                else:
                    key = op[1]
                    assert store.get(key) == (view[key][0] if key in view else None)  # type: ignore[arg-type]
            check_all(store, view, offset)
            store.flush(offset)
            store.close()
            store = PartitionStore.open(root, "flows", 0)
            check_all(store, view, offset)
        finally:
            store.close()


restore_ops = st.lists(
    st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.tuples(st.binary(max_size=4), deadlines))),
    max_size=40,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(restore_ops, st.integers(0, 40), st.integers(0, 40))
def test_restore_in_two_sittings_matches_model(
    records: list[tuple[bytes, tuple[bytes, int | None] | None]], crash_at: int, overlap: int
) -> None:
    """Restore, crash part-way (after a flush), reopen and restore again from an earlier offset."""
    view: Model = {}
    for key, rec in records:
        if rec is None:
            view.pop(key, None)
        else:
            view[key] = rec
    log = [(k, None if r is None else changelog_value(r[0], r[1]), off) for off, (k, r) in enumerate(records)]
    crash_at = min(crash_at, len(log))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with PartitionStore.open(root, "flows", 0) as store:
            for key, record, off in log[:crash_at]:
                store.apply_changelog(key, record, off)
            store.flush()
            for key, record, off in log[crash_at : crash_at + 3]:
                store.apply_changelog(key, record, off)  # staged, then lost in the crash
        with PartitionStore.open(root, "flows", 0) as store:
            resume = max(0, (store.changelog_offset or -1) + 1 - overlap)  # a consumer re-reading a bit
            for key, record, off in log[resume:]:
                store.apply_changelog(key, record, off)
            store.flush()
            check_all(store, view, len(log) - 1 if log else None)
