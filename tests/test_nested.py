"""Nested cross-validation on a synthetic model whose prior bias is known: the estimate of the whole
tuning procedure (choice of candidate and correction repeated in each outer fold) matches the procedure's
true score on fresh items within its interval over many seeds, where the inner winner's score flatters it;
and the one-SE rule prefers the simpler candidate within one standard error of the best."""

from __future__ import annotations

import numpy as np

from labeler.confidence.bias import apply_offsets, macro_f1
from labeler.confidence.correct import fit_offsets_for
from labeler.tune.nested import nested_score
from labeler.tune.protocol import Score, bootstrap_indices, choose, score_candidate, stratified_folds

K = 3
BIAS = np.array([8.0, 1.0, 1.0])  # the plain prompt multiplies label 0's probability by 8
KINDS = ("none", "contextual", "offsets_ll")


def draw(n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Two candidates' distributions on n items: a biased sharp one and an unbiased noisy one."""
    logits = rng.normal(scale=2.0, size=(n, K))
    post = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(K, p=p) for p in post])
    biased = post * BIAS
    noisy = np.exp(logits + rng.normal(scale=1.5, size=(n, K)))
    return {"plain": biased / biased.sum(1, keepdims=True), "noisy": noisy / noisy.sum(1, keepdims=True)}, y


CONTENT_FREE = {"plain": (BIAS / BIAS.sum())[None, :], "noisy": np.full((1, K), 1 / K)}


def procedure(probs: dict[str, np.ndarray], y: np.ndarray, seed: int) -> tuple[Score, np.ndarray]:
    """What `labeler tune` does on the tuning items: the inner choice and the correction refitted on all."""
    folds = stratified_folds(y, K, n_splits=5, seed=seed)
    boot = bootstrap_indices(len(y), n_boot=200, seed=seed)
    scores = [
        s
        for name, p in probs.items()
        for s in score_candidate(name, p, y, kinds=KINDS, fold_of=folds, boot=boot, content_free=CONTENT_FREE[name])
    ]
    best = choose(scores)
    b = fit_offsets_for(best.correction, probs[best.candidate], y, content_free=CONTENT_FREE[best.candidate])
    return best, b


def test_the_nested_estimate_covers_the_procedures_true_score_over_many_seeds() -> None:
    covered, inner_gap, nested_gap = 0, [], []
    seeds = range(16)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        probs, y = draw(120, rng)
        fresh, y_fresh = draw(4000, rng)
        best, b = procedure(probs, y, seed)
        truth = macro_f1(y_fresh, np.argmax(apply_offsets(fresh[best.candidate], b), axis=1), K)
        runs = {name: (p, CONTENT_FREE[name]) for name, p in probs.items()}
        est = nested_score(runs, y, kinds=KINDS, outer=5, inner=5, n_boot=300, seed=seed)
        assert len(est.picks) == 5 and est.low <= est.macro_f1 <= est.high
        covered += est.low <= truth <= est.high
        inner_gap.append(best.macro_f1 - truth)
        nested_gap.append(est.macro_f1 - truth)
    assert covered >= 0.8 * len(seeds), f"the interval covered the true score in {covered} of {len(seeds)} seeds"
    assert abs(np.mean(nested_gap)) < 0.03, f"nested estimate off by {np.mean(nested_gap):+.3f} on average"
    assert np.mean(inner_gap) > np.mean(nested_gap), "the inner winner's score should flatter it"


def test_the_one_se_rule_prefers_the_simpler_within_one_se_of_the_best() -> None:
    z = np.zeros((1, K))
    f = np.zeros(1, dtype=int)

    def s(name: str, value: float, se: float) -> Score:
        return Score(name, "none", value, value - 2 * se, value + 2 * se, z, (), f, se)

    scores = [s("simple", 0.80, 0.03), s("middle", 0.70, 0.03), s("complex", 0.82, 0.03)]
    assert choose(scores).candidate == "simple"  # 0.80 ≥ 0.82 − 0.03
    assert choose(scores, one_se=False).candidate == "complex"
    assert choose([s("simple", 0.75, 0.03), s("complex", 0.82, 0.03)]).candidate == "complex"
