"""The quantile sketch: exact nearest-rank percentiles while small, within 0.5 % once folded."""

from __future__ import annotations

import random

import pytest

from stream_app.report import sketch
from stream_app.report.sketch import Quantiles


def test_nearest_rank_percentiles_are_exact_while_small() -> None:
    q = Quantiles()
    for v in (4, 1, 3, 2):
        q.add(v)
    assert q.percentiles(50, 95, 99, 25) == [2, 4, 4, 1]
    assert (q.count, q.min, q.max, q.exact) == (4, 1, 4, True)
    assert Quantiles().percentile(50) is None


def test_negative_values_count_as_zero() -> None:
    q = Quantiles()
    q.add(-5)
    assert (q.min, q.percentile(50)) == (0, 0)


def test_folded_percentiles_are_within_half_a_percent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sketch, "EXACT_LIMIT", 1000)
    rng = random.Random(7)
    values = [int(rng.lognormvariate(10, 2)) for _ in range(20_000)] + [0] * 50
    q = Quantiles()
    for v in values:
        q.add(v)
    assert not q.exact
    ordered = sorted(values)
    for p in (1, 50, 90, 95, 99, 99.9):
        true = ordered[sketch.rank_of(p, len(values)) - 1]
        got = q.percentile(p)
        assert got is not None and abs(got - true) <= 0.005 * true + 1, (p, got, true)
    assert len(q._buckets) < 3000  # bounded by the range of the values, not their number
    assert sum(q.histogram([1000, 100_000])) == len(values)
