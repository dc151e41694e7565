"""Estimates for the whole corpus from the random audit: accuracy, per-label prevalence, and how many audit
items a given precision needs. Pure functions.

The audit is a stratified random sample: stratum h holds N_h corpus items of which n_h were audited, so each
audited item stands for N_h/n_h items. Estimates are stratified (Hájek) means; a share over a sub-population
(a domain, e.g. the items no human reviewed) is the weighted share among the audited items in it.

Intervals that stay honest at 3 items per stratum. The textbook stratified variance Σ_h W_h² s²_h/n_h is zero
when every audited item of every stratum agrees (3 of 3 right, 0 of 3 "politics"), and a CLT interval then
has zero width although 3 items say little. Here each stratum's variance term is at least the one of its
Jeffreys-smoothed share p̃_h = (x_h + ½)/(n_h + 1):
    v_h = max( W_h² s²_h / n_h ,  W_h² p̃_h (1 − p̃_h) / n_h )          (W_h = N_h/N, within the domain)
and the interval is Wilson's at the effective sample size n_eff = p̃ (1 − p̃) / Σ_h v_h, p̃ = Σ_h W_h p̃_h: the
set of p0 with (p̂ − p0)² <= z² p0 (1 − p0)/n_eff. With one stratum and no smoothing at work this is the plain
Wilson interval of the audit. The finite-population correction is left out (it can only narrow the
interval, and matters only when the audit is a large share of a stratum). tests/test_audit_coverage.py
measures the coverage: at least 93% at 15, 30 and 75 audited items, never a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from labeler.evaluate.intervals import Estimate, wilson_interval, z_value
from labeler.evaluate.reference import encode

_NAN = Estimate(float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True)
class _Design:
    masks: tuple[np.ndarray, ...]  # per stratum: (n,) which audited items are in it
    sizes: tuple[int, ...]  # N_h
    weights: np.ndarray  # (n,) N_h / n_h of each audited item


def _design(strata: Sequence[str], populations: Mapping[str, int]) -> _Design:
    s = np.asarray(strata, dtype=object)
    names = sorted(set(s.tolist()))
    masks = tuple(s == h for h in names)
    sizes = tuple(int(populations.get(h, int(m.sum()))) for h, m in zip(names, masks, strict=True))
    weights = np.zeros(len(s))
    for m, size in zip(masks, sizes, strict=True):
        weights[m] = size / m.sum()
    return _Design(masks, sizes, weights)


def _share(
    y: np.ndarray, design: _Design, domain: np.ndarray, flags: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified (Hájek) mean over the domain of the (n, K) outcomes y, its variance (linearised, each
    stratum's term at least the Jeffreys floor of the 0/1 `flags`, see the module docstring) and the
    smoothed share Σ_h W_h p̃_h of the flags. Each of shape (K,); NaN when the domain is empty."""
    wd = design.weights * domain
    n_d = float(wd.sum())
    k = y.shape[1]
    if n_d == 0:
        return np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
    value = wd @ y / n_d
    var, smooth = np.zeros(k), np.zeros(k)
    for m, size in zip(design.masks, design.sizes, strict=True):
        md = m & domain
        n_h, n_dh = int(m.sum()), int(md.sum())
        if n_dh == 0:
            continue
        share = size * n_dh / n_h / n_d  # this stratum's share of the domain
        z = (y[m] - value) * domain[m][:, None] / n_d
        lin = size**2 * z.var(axis=0, ddof=1) / n_h if n_h >= 2 else np.zeros(k)
        p_h = (flags[md].sum(axis=0) + 0.5) / (n_dh + 1)
        var += np.maximum(lin, share**2 * p_h * (1 - p_h) / n_dh)
        smooth += share * p_h
    return value, var, smooth


def _wilson(value: float, var: float, smooth: float, level: float) -> tuple[Estimate, float]:
    if not math.isfinite(value):
        return _NAN, 0.0
    n_eff = round(smooth * (1 - smooth) / var, 9)  # rounded: one stratum gives n exactly, not n ± 1 ulp
    lo, hi = wilson_interval(value, n_eff, level=level)
    return Estimate(float(value), min(lo, value), max(hi, value)), n_eff


def stratified_proportion(
    values: Sequence[float],
    strata: Sequence[str],
    *,
    populations: Mapping[str, int],
    domain: Sequence[bool] | None = None,
    level: float = 0.95,
) -> tuple[Estimate, float]:
    """Share of 1s among the population (or a domain of it) from a stratified random sample.

    values: (n,) 0/1 outcome of each sampled item (e.g. LLM label correct); strata: (n,) each item's stratum;
    populations: stratum → its size N_h; domain: (n,) whether the item belongs to the sub-population of
    interest (default all). Item weights are N_h / n_h; the estimate is the weighted (Hájek) share in the
    domain, its variance the linearised stratified one (z_i = d_i (y_i − R) / N̂_d) with the Jeffreys floor
    per stratum, and the interval Wilson's at the effective sample size (module docstring), so a sample with
    no errors still gets a real interval. Returns (estimate, effective n). Strata absent from the sample
    are left out (their items unrepresented)."""
    y = np.asarray(values, dtype=float).reshape(-1, 1)
    d = np.ones(len(y), dtype=bool) if domain is None else np.asarray(domain, dtype=bool)
    value, var, smooth = _share(y, _design(strata, populations), d, y)
    return _wilson(float(value[0]), float(var[0]), float(smooth[0]), level)


@dataclass(frozen=True)
class Prevalence:
    """Share of one label in the whole corpus: as the LLM labelled it (`llm`), from the audit alone
    (`classical`, stratified), and prediction-powered (`ppi`): the LLM's census count corrected by the
    audited error. When every stratum holds a single LLM label (the router stratifies by it), the two
    estimates are the same number."""

    label: str
    llm: float
    classical: Estimate
    ppi: Estimate


def ppi_prevalence(
    pred_all: Sequence[Hashable | None],
    audit_true: Sequence[Hashable | None],
    audit_pred: Sequence[Hashable | None],
    *,
    audit_strata: Sequence[str],
    populations: Mapping[str, int],
    labels: Sequence[str],
    level: float = 0.95,
) -> tuple[Prevalence, ...]:
    """Per-label prevalence in the corpus, from the audit alone and corrected for the LLM's error
    (prediction-powered inference).

    pred_all: (N,) the LLM label of every item; audit_true, audit_pred: (n,) human and LLM labels of the
    audited items; audit_strata: (n,) their strata, sampled at random within each stratum of size N_h.
        classical  θ_k = Σ_h (N_h/N) · mean_{audit ∩ h} 1[human = k]
        ppi        θ_k = (1/N) Σ_all 1[pred = k]  +  Σ_h (N_h/N) · mean_{audit ∩ h} (1[human = k] − 1[pred = k])
    The census term has no variance. Both intervals are Wilson's at the effective sample size, the variance
    floored per stratum as in the module docstring (for ppi with the share of items whose human and LLM
    disagree about k), so the two coincide when the strata are the LLM's labels."""
    k = len(labels)
    pred = encode(pred_all, labels)
    llm = np.bincount(pred, minlength=k + 1)[:k] / len(pred)
    eye = np.eye(k + 1)[:, :k]
    h_ind, p_ind = eye[encode(audit_true, labels)], eye[encode(audit_pred, labels)]
    design = _design(audit_strata, populations)
    everyone = np.ones(len(h_ind), dtype=bool)
    cls, cls_var, smooth = _share(h_ind, design, everyone, h_ind)
    delta = h_ind - p_ind
    rect, rect_var, _ = _share(delta, design, everyone, np.abs(delta))
    out = []
    for j, lab in enumerate(labels):
        classical, _ = _wilson(float(cls[j]), float(cls_var[j]), float(smooth[j]), level)
        theta = float(min(max(llm[j] + rect[j], 0.0), 1.0))
        ppi, _ = _wilson(theta, float(rect_var[j]), float(smooth[j]), level)
        out.append(Prevalence(label=lab, llm=float(llm[j]), classical=classical, ppi=ppi))
    return tuple(out)


# --- how many audit items ------------------------------------------------------------------------------------


def conservative_share(p: float, n: float | None, *, level: float = 0.95) -> float:
    """The share to plan with: p itself without a pilot (n None), else the end of p's Wilson interval on n
    items closest to 1/2 (largest p (1 − p)), so a pilot that saw no error does not plan for none."""
    if n is None:
        return p
    lo, hi = wilson_interval(p, n, level=level)
    return 0.5 if lo <= 0.5 <= hi else lo if lo > 0.5 else hi


def audit_size_for_accuracy(
    *,
    expected_accuracy: float,
    half_width: float,
    level: float = 0.95,
    population: int | None = None,
    pilot_n: float | None = None,
) -> int:
    """Audit items needed for a ±half_width normal-approximation interval on an accuracy near
    `expected_accuracy`: n0 = z² p (1 − p) / h², with the finite-population correction n0 / (1 + (n0 − 1)/N)
    when the population size N is given. With `pilot_n` (the accuracy was measured on that many audited
    items) p is the end of its Wilson interval closest to 1/2; p (1 − p) = 0 plans with p = 1/2."""
    p = conservative_share(expected_accuracy, pilot_n, level=level)
    return _sample_size(p * (1 - p), half_width, level, population)


def audit_size_for_prevalence(
    *,
    prevalence: float,
    half_width: float,
    level: float = 0.95,
    population: int | None = None,
    disagreement_rate: float | None = None,
    pilot_n: float | None = None,
) -> int:
    """Audit items needed for a ±half_width interval on a label's prevalence. Simple random audit: variance
    p (1 − p). Audit stratified by the LLM's label (give `disagreement_rate`, the share of items where
    1[human = k] and 1[LLM = k] differ): the stratified variance Σ_h W_h p_h (1 − p_h) is at most that rate
    and at most p (1 − p). With `pilot_n` both rates are taken at the conservative end of their Wilson
    interval on that many items (the disagreement rate at its upper end); a zero variance plans with 1/4."""
    p = conservative_share(prevalence, pilot_n, level=level)
    var = p * (1 - p)
    if disagreement_rate is not None:
        d = disagreement_rate if pilot_n is None else wilson_interval(disagreement_rate, pilot_n, level=level)[1]
        var = min(d, var) if var > 0 else d
    return _sample_size(var, half_width, level, population)


def _sample_size(var: float, half_width: float, level: float, population: int | None) -> int:
    if not 0 < half_width < 1:
        raise ValueError("half_width must be between 0 and 1")
    if not var > 0:
        var = 0.25  # nothing measured: plan for the worst case, p = 1/2
    n0 = z_value(level) ** 2 * var / half_width**2
    if population:
        n0 = n0 / (1 + (n0 - 1) / population)
    return max(1, math.ceil(n0 - 1e-9))


@dataclass(frozen=True)
class AuditAccuracy:
    """The audit's accuracy (or exact-match share) for the corpus, for the items no human saw, and for the
    final dataset (reviewed items carry the human answer; the others the LLM's, at the unseen-domain share,
    except routed items still waiting for review, which are harder: at the routed-domain share, bounded by
    0–100% when none of them was audited — `unbounded_waiting`)."""

    all: Estimate
    n_eff: float
    unseen: Estimate
    n_eff_unseen: float
    audited_unseen: int
    final: Estimate
    waiting: int
    unbounded_waiting: bool

    def waiting_note(self, what: str) -> str:
        """The caveat when routed items wait for review and none of them was audited ('' otherwise)."""
        if not self.unbounded_waiting:
            return ""
        return (f"{self.waiting} routed items still wait for review and none of them was audited: their {what} is "
                "bounded by 0–100% in the final-dataset interval.")


def audit_accuracy(
    correct: Sequence[bool] | Sequence[float],
    strata: Sequence[str],
    populations: Mapping[str, int],
    unseen: Sequence[bool],
    *,
    n_items: int,
    n_reviewed: int,
    waiting: int,
    level: float = 0.95,
) -> AuditAccuracy:
    """`correct[i]`: audited item i's answer matches its human one; `unseen[i]`: it was not routed. Items
    queued only by active learning were not chosen by the LLM's doubt: until reviewed they count as unseen."""
    acc_all, n_eff = stratified_proportion(correct, strata, populations=populations, level=level)
    acc_unseen, n_eff_u = stratified_proportion(correct, strata, populations=populations, domain=unseen, level=level)
    acc_waiting, unbounded = acc_unseen, False
    if waiting:
        routed = [not u for u in unseen]
        unbounded = not any(routed)
        acc_waiting = (Estimate(acc_all.value, 0.0, 1.0) if unbounded else
                       stratified_proportion(correct, strata, populations=populations, domain=routed, level=level)[0])
    n, r = n_items, n_reviewed
    final = Estimate(*((r + (n - r - waiting) * getattr(acc_unseen, k) + waiting * getattr(acc_waiting, k)) / n
                       for k in ("value", "low", "high")))
    return AuditAccuracy(acc_all, n_eff, acc_unseen, n_eff_u, sum(unseen), final, waiting, unbounded)
