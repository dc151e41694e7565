"""Closing the loop (issue 12): the human labels make the labels better, measured on items they never touched.

candidates.py  prompt variants × few-shot strategies; the task config of one candidate; the tuned task TOML
protocol.py    pure: stratified folds, the correction fitted inside them, macro-F1 with bootstrap intervals
               on held-out folds, the choice (the random audit is never among the items)
routing.py     pure: the low-confidence threshold that reaches a target accuracy on the rest, and its budget
run.py         `labeler tune RUN_DIR` and `labeler relabel RUN_DIR`
"""
