"""Compatibility: the names `labeler.cli.humans` and eval/review_roundtrip.py import from here. The review
tools live in one module each; import from those:

    labeler.review.queue_export   export_queue, shows_suggestion (the queue for Label Studio, Argilla, a CSV)
    labeler.review.labelstudio    Label Studio config, tasks, project settings; reading its exports
    labeler.review.argilla        Argilla settings and records; reading its exports
    labeler.review.csvfile        the review CSV, written and read
    labeler.review.answers        read_answers (format detection), check_answers
    labeler.review.importer       import_reviews, ImportSummary (sync of the run's reviews)
    labeler.review.agreement      agreement, format_agreement
    labeler.review.dataset        with_human_labels (the final dataset's rows)
    labeler.review.merge          final_rows, merge_run
    labeler.review.promote        promote
"""

from __future__ import annotations

from labeler.review.agreement import format_agreement
from labeler.review.importer import import_reviews
from labeler.review.merge import final_rows, merge_run
from labeler.review.promote import promote
from labeler.review.queue_export import export_queue

__all__ = ["export_queue", "final_rows", "format_agreement", "import_reviews", "merge_run", "promote"]
