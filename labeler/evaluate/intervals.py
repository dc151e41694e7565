"""Estimates and their intervals: the Estimate type, the seeded bootstrap, and Wilson's score interval.

Bootstrap. Items are resampled with replacement `n_boot` times (seeded) and an interval is the percentile
interval of the resampled statistic. Resamples are expressed as item weights, (B, n) multinomial counts
that sum to n per row, so any statistic that is a weighted sum over items is computed for all resamples
at once (`boot_items`), in chunks that bound memory.

Wilson. `wilson_interval(p, n)` takes a non-integer n (an effective sample size), which scipy's
`binomtest(k, n).proportion_ci(method="wilson")` cannot; the tests check the two agree at integer n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """A value and its interval (`level`, e.g. 0.95). NaN when undefined on the data at hand."""

    value: float
    low: float
    high: float

    def excludes(self, x: float) -> bool:
        return bool(self.low > x or self.high < x)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@cache
def z_value(level: float) -> float:
    """The two-sided normal quantile: 1.96 for level 0.95."""
    return float(stats.norm.ppf(0.5 + level / 2))


def percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of (n_boot, ...) samples, ignoring NaN; NaN where all are NaN."""
    s = np.asarray(samples, dtype=float)
    flat = s.reshape(s.shape[0], -1)
    lo = np.full(flat.shape[1], np.nan)
    hi = np.full(flat.shape[1], np.nan)
    ok = ~np.isnan(flat).all(axis=0)
    if ok.any():
        q = (1 - level) / 2
        lo[ok], hi[ok] = np.nanquantile(flat[:, ok], [q, 1 - q], axis=0)
    return lo.reshape(s.shape[1:]), hi.reshape(s.shape[1:])


def from_samples(value: float, samples: np.ndarray, level: float) -> Estimate:
    """An Estimate: `value` with the percentile interval of its (n_boot,) bootstrap samples."""
    lo, hi = percentile_interval(samples, level)
    return Estimate(float(value), float(lo), float(hi))


def item_weights(n: int, *, n_boot: int, seed: int, max_cells: int = 4_000_000) -> Iterator[np.ndarray]:
    """Bootstrap weights: (chunk, n) multinomial counts summing to n per row, n_boot rows in all."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, max_cells // max(n, 1)))
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]  # n items drawn per row
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(float)
        done += size


def boot_items(n: int, fn: Callable[[np.ndarray], np.ndarray], *, n_boot: int, seed: int) -> np.ndarray:
    """Stack fn(weights) over the bootstrap chunks: fn maps (chunk, n) weights to (chunk, ...) values."""
    return np.concatenate([np.asarray(fn(w), dtype=float) for w in item_weights(n, n_boot=n_boot, seed=seed)])


def wilson_interval(p: float, n: float, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion p observed on n (possibly effective, non-integer) trials:
    the p0 with (p − p0)² <= z² p0 (1 − p0) / n. Never of zero width for n > 0; (0, 1) for n <= 0."""
    if n <= 0 or not math.isfinite(p):
        return (0.0, 1.0)
    p = min(max(p, 0.0), 1.0)
    z = z_value(level)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
