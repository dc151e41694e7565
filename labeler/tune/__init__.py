"""Closing the loop (issue 12): the human labels make the labels better, measured on items they never touched.

candidates.py  prompt variants × few-shot strategies; the task config of one candidate; the tuned task TOML
protocol.py    pure: stratified folds, the correction fitted inside them, macro-F1 with bootstrap intervals
               on held-out folds, the choice (the random audit is never among the items)
routing.py     pure: the low-confidence threshold that reaches a target accuracy on the rest, and its budget
labeling.py    the tuning items labeled under one candidate, through the backend and the cache, and the cost
nested.py      pure: nested cross-validation of the whole choice (an unbiased estimate on unseen items)
run.py         `labeler tune RUN_DIR` (single labels; multi-label and span runs go to tasktype_run.py)
elements.py    pure, multi-label and spans: micro-F1 with bootstrap intervals, per-class thresholds on element
               confidence fitted inside folds, the one-SE choice, nested cross-validation
tasktype_run.py  `labeler tune` of a multi-label or span run
relabel.py     `labeler relabel RUN_DIR`: the corpus labeled under the tuning, into a new run
"""
