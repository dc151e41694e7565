"""The cost/quality study: LLM labels vs random human labels vs active learning, at equal cost, judged by the
error structure of the classifiers trained on each.

    data.py         the pool, the test split (drawn first, by item id), the oracle and the prices
    classifiers.py  TF-IDF (+ LSA) features fitted on the pool; the student (logistic regression, pluggable)
    strategies.py   query strategies (scores from scikit-activeml)
    loop.py         rounds, budgets and stopping rules (simulated active learning)
    metrics.py      scores on the test split with paired bootstrap intervals
    run.py          `labeler study RUN_DIR`: the study of a run, written to RUN_DIR/study/
    report.py       report.md, report.html and PNGs
    live.py         `labeler study next`: the next review batch by a strategy, for the router
    synthetic.py    a pool with a known answer, for tests and timing
"""

from labeler.study.data import StudyError

__all__ = ["StudyError"]
