"""Agreement among humans, and of the LLM with them: Krippendorff's alpha (nominal) with its coincidence
matrix, and the human disagreement band. Bootstrap intervals resample units (items).

Alpha is our own vectorised code rather than the `krippendorff` package: both give the same values (the tests
compare them on the worked example of Krippendorff (2011) and on random data when the package is installed),
but ours computes the point value and all bootstrap resamples in one pass from per-unit coincidences, 7×
faster than calling the package once per resample (0.3 s against 2.3 s for 1,000 resamples of 5,000 units).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from labeler.evaluate.intervals import Estimate, boot_items, from_samples
from labeler.evaluate.reference import encode


def _unit_counts(units: Sequence[Sequence[Hashable]], labels: Sequence[str]) -> np.ndarray:
    """(U, K) how many annotators gave each label to each unit (values outside `labels` ignored)."""
    counts = np.zeros((len(units), len(labels)))
    for u, values in enumerate(units):
        codes = encode(list(values), labels)
        counts[u] = np.bincount(codes[codes < len(labels)], minlength=len(labels))
    return counts


def _unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """(U, K, K) each pairable unit's contribution to the coincidence matrix: (N Nᵀ − diag N) / (m − 1)."""
    m = counts.sum(axis=1)
    pairable = m >= 2
    c = counts[pairable]
    o = c[:, :, None] * c[:, None, :] - np.einsum("uk,kl->ukl", c, np.eye(c.shape[1]))
    out = np.zeros((len(counts), counts.shape[1], counts.shape[1]))
    out[pairable] = o / (m[pairable] - 1)[:, None, None]
    return out


def coincidence_matrix(units: Sequence[Sequence[Hashable]], *, labels: Sequence[str]) -> np.ndarray:
    """(K, K) Krippendorff's coincidence matrix: each unit with m >= 2 values adds every ordered pair of its
    values (from different annotators) with weight 1/(m − 1). Symmetric; its total is the pairable values."""
    return _unit_coincidences(_unit_counts(units, labels)).sum(axis=0)


def _alpha_from_coincidences(o: np.ndarray) -> np.ndarray:
    """Nominal alpha from (..., K, K) coincidence matrices: 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k."""
    n_c = o.sum(axis=-1)
    n = n_c.sum(axis=-1)
    observed = n - np.trace(o, axis1=-2, axis2=-1)
    expected = n**2 - (n_c**2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((expected > 0) & (n > 1), 1 - (n - 1) * observed / expected, np.nan)


def krippendorff_alpha(
    units: Sequence[Sequence[Hashable]],
    *,
    labels: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Krippendorff's alpha for nominal data, with a bootstrap interval over units.

    units: one sequence per item holding the labels its annotators gave (any number; items with fewer than
    two are not pairable and do not count). alpha = 1 − D_o/D_e = 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k,
    with o the coincidence matrix, n_c its row sums and n the number of pairable values."""
    per_unit = _unit_coincidences(_unit_counts(units, labels))
    value = float(_alpha_from_coincidences(per_unit.sum(axis=0)))
    flat = per_unit.reshape(len(per_unit), -1)
    k = len(labels)
    samples = boot_items(
        len(units), lambda w: _alpha_from_coincidences((w @ flat).reshape(-1, k, k)), n_boot=n_boot, seed=seed
    )
    return from_samples(value, samples, level)


@dataclass(frozen=True)
class HumanBand:
    """Is the LLM inside the human disagreement band? On items with two or more human labels, each human j
    in turn is held out: `human_loo` is how often j agrees with the majority of the other humans,
    `llm_vs_others` how often the LLM agrees with that same majority (ties count 1/#tied), and `difference`
    the paired difference (LLM − human). `llm_vs_majority` uses the majority of all the item's humans.
    verdict: "inside" (difference interval holds 0), "above" or "below"."""

    n_items: int
    n_judgements: int
    human_loo: Estimate
    llm_vs_others: Estimate
    difference: Estimate
    llm_vs_majority: Estimate
    per_reviewer: Mapping[str, float]
    verdict: str


def _modal_share(votes: Sequence[str], value: str | None) -> float:
    """1/|M| if value is one of the |M| most frequent votes, else 0."""
    counts = Counter(votes)
    top = max(counts.values())
    modal = [v for v, c in counts.items() if c == top]
    return (value in modal) / len(modal)


def human_band(
    humans: Sequence[Mapping[str, str]],
    llm: Sequence[str | None],
    *,
    weights: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> HumanBand | None:
    """humans: (n,) reviewer → label for each item; llm: (n,) the LLM's label; weights: (n,) optional item
    weights (e.g. N_h/n_h for a stratified audit sample), applied to the point values and the resamples.
    Only items with 2+ humans count; None if there is none.

    Which items go in decides what the verdict means: items the router chose for low confidence are the hard
    ones, so pass a sample whose selection does not depend on the LLM (the random audit) to speak for the
    corpus."""
    w_all = np.ones(len(humans)) if weights is None else np.asarray(weights, dtype=float)
    keep = [i for i, h in enumerate(humans) if len(h) >= 2]
    rows = [(humans[i], llm[i]) for i in keep]
    if not rows:
        return None
    design = w_all[keep]
    hum, mach, count, major = (np.zeros(len(rows)) for _ in range(4))
    by_reviewer: dict[str, list[float]] = {}
    for i, (h, y) in enumerate(rows):
        for j, label in h.items():
            others = [v for r, v in h.items() if r != j]
            s = _modal_share(others, label)
            hum[i] += s
            mach[i] += _modal_share(others, y)
            by_reviewer.setdefault(j, []).append(s)
        count[i] = len(h)
        major[i] = _modal_share(list(h.values()), y)
    cols = np.stack([hum, mach, count, major], axis=1)

    def ratios(w: np.ndarray) -> np.ndarray:
        wd = w * design
        s = wd @ cols
        total = wd.sum(axis=1)
        return np.stack([s[:, 0] / s[:, 2], s[:, 1] / s[:, 2], (s[:, 1] - s[:, 0]) / s[:, 2], s[:, 3] / total], 1)

    samples = boot_items(len(rows), ratios, n_boot=n_boot, seed=seed)
    point = ratios(np.ones((1, len(rows))))[0]
    est = [from_samples(point[i], samples[:, i], level) for i in range(4)]
    diff = est[2]
    verdict = "above" if diff.low > 0 else "below" if diff.high < 0 else "inside"
    return HumanBand(
        n_items=len(rows),
        n_judgements=int(count.sum()),
        human_loo=est[0],
        llm_vs_others=est[1],
        difference=diff,
        llm_vs_majority=est[3],
        per_reviewer={r: float(np.mean(v)) for r, v in sorted(by_reviewer.items())},
        verdict=verdict,
    )
