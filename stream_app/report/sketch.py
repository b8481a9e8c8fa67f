"""A bounded-memory quantile sketch: exact while small, 0.5 % relative error (+- 1 ms) once large.

A report over millions of outcomes cannot keep every latency, and one over a hand-built test set
must give exact figures. So a :class:`Quantiles` keeps its values exactly (a compact ``array`` of
integer milliseconds) up to :data:`EXACT_LIMIT` values; past that it folds them into logarithmic
buckets (the DDSketch idea: bucket ``i`` holds values in ``(g**(i-1), g**i]`` with
``g = (1 + a) / (1 - a)``, so any quantile read back is within ``a`` = :data:`RELATIVE_ACCURACY` of a
true value of the data). Memory is then bounded by the range of the values, not their number: a
range of 1 ms to 30 days is about 1,500 buckets.

Percentiles are nearest-rank: the p-th percentile of n values is the ``ceil(p/100 * n)``-th smallest
(so p50 of 1, 2, 3, 4 is 2, and every percentile is a value that occurred).
"""

from __future__ import annotations

import math
from array import array

#: Values kept exactly before the sketch folds them into buckets (512 KiB of int64 per sketch).
EXACT_LIMIT = 65_536
#: Relative accuracy of a quantile once folded.
RELATIVE_ACCURACY = 0.005
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)


def rank_of(p: float, n: int) -> int:
    """The 1-based nearest rank of percentile ``p`` (0 < p <= 100) among ``n`` values."""
    return max(1, math.ceil(p / 100 * n - 1e-9))


class Quantiles:
    """Non-negative integer values (milliseconds): count, min, max, nearest-rank percentiles."""

    __slots__ = ("_buckets", "_exact", "_zeros", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._exact: array[int] | None = array("q")
        self._buckets: dict[int, int] = {}
        self._zeros = 0
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    @property
    def exact(self) -> bool:
        """True while every value is kept, so percentiles are exact."""
        return self._exact is not None

    def add(self, value: int) -> None:
        """Count one value (negative values, from clock skew between reporters, count as 0)."""
        value = max(value, 0)
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value
        exact = self._exact
        if exact is not None:
            exact.append(value)
            if len(exact) > EXACT_LIMIT:
                self._exact = None
                for v in exact:
                    self._fold(v)
            return
        self._fold(value)

    def _fold(self, value: int) -> None:
        if value == 0:
            self._zeros += 1
            return
        key = math.ceil(math.log(value) / _LOG_GAMMA)
        self._buckets[key] = self._buckets.get(key, 0) + 1

    def percentile(self, p: float) -> int | None:
        """The nearest-rank ``p``-th percentile in ms (None when empty); exact, or within 0.5 % +- 1 ms."""
        if self.count == 0:
            return None
        rank = rank_of(p, self.count)
        if self._exact is not None:
            return sorted(self._exact)[rank - 1]
        seen = self._zeros
        if rank <= seen:
            return 0
        for key in sorted(self._buckets):
            seen += self._buckets[key]
            if seen >= rank:
                # The bucket's midpoint in relative terms: within RELATIVE_ACCURACY of any value in it.
                estimate = round(2 * _GAMMA**key / (_GAMMA + 1))
                return max(self.min or 0, min(estimate, self.max or 0))
        return self.max

    def percentiles(self, *ps: float) -> list[int | None]:
        """Several percentiles at once (one sort while exact)."""
        if self._exact is not None and self.count:
            ordered = sorted(self._exact)
            return [ordered[rank_of(p, self.count) - 1] for p in ps]
        return [self.percentile(p) for p in ps]

    def histogram(self, edges: list[int]) -> list[int]:
        """Counts per interval of ``edges`` (ms, ascending): ``[<=e0, (e0, e1], ..., > e_last]``.

        Exact while the sketch is exact; from the buckets' midpoints once folded (each value then
        lands within 0.5 % of where it belongs).
        """
        from bisect import bisect_left

        counts = [0] * (len(edges) + 1)
        if self._exact is not None:
            for v in self._exact:
                counts[bisect_left(edges, v)] += 1
            return counts
        counts[bisect_left(edges, 0)] += self._zeros
        for key, n in self._buckets.items():
            counts[bisect_left(edges, round(2 * _GAMMA**key / (_GAMMA + 1)))] += n
        return counts
