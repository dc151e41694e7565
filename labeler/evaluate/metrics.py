"""The maths of evaluation, one module per job; this module gathers their public names (`from
labeler.evaluate import metrics as M`). Pure functions throughout.

    reference            labels as codes; an item's reference label from its human labels
    intervals            Estimate, the seeded bootstrap, Wilson's interval
    classification       confusion matrix, accuracy, F1, kappa, over-prediction, confusion pairs
    agreement            Krippendorff's alpha, coincidence matrix, the human disagreement band
    calibration_metrics  ECE (labeler.confidence.reliability), Brier, AUROC, reliability bins
    audit                stratified estimates from the random audit, prevalence, audit sample sizes
    cost                 accuracy against review budget, cost scenarios
"""

from __future__ import annotations

from labeler.confidence.reliability import ReliabilityBin, ece, reliability_bins
from labeler.evaluate.agreement import HumanBand, coincidence_matrix, human_band, krippendorff_alpha
from labeler.evaluate.audit import (
    Prevalence,
    audit_size_for_accuracy,
    audit_size_for_prevalence,
    conservative_share,
    ppi_prevalence,
    stratified_proportion,
)
from labeler.evaluate.calibration_metrics import Calibration, calibration, weighted_auroc
from labeler.evaluate.classification import (
    Agreement,
    ClassReport,
    agreement,
    confusion_pairs,
    confusion_stats,
    row_normalised,
)
from labeler.evaluate.cost import budget_curve, cost_scenarios
from labeler.evaluate.intervals import Estimate, wilson_interval, z_value
from labeler.evaluate.reference import encode

_weighted_auroc = weighted_auroc  # the name the tests have used

__all__ = [
    "Agreement",
    "Calibration",
    "ClassReport",
    "Estimate",
    "HumanBand",
    "Prevalence",
    "ReliabilityBin",
    "agreement",
    "audit_size_for_accuracy",
    "audit_size_for_prevalence",
    "budget_curve",
    "calibration",
    "coincidence_matrix",
    "confusion_pairs",
    "confusion_stats",
    "conservative_share",
    "cost_scenarios",
    "ece",
    "encode",
    "human_band",
    "krippendorff_alpha",
    "ppi_prevalence",
    "reliability_bins",
    "row_normalised",
    "stratified_proportion",
    "weighted_auroc",
    "wilson_interval",
    "z_value",
]
