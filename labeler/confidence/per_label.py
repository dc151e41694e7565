"""Calibration per label of a multi-label run: each label's element confidence mapped to P(that label is right).

An element of a multi-label annotation is one chosen label ("label sport", labeler.confidence.elements) or,
for an empty annotation, EMPTY; its confidence is the vote share of the samples (members) that chose it
too. Per element name, a calibrator of labeler.confidence.calibrators (temperature, Platt or isotonic, chosen
by cross-validated log-loss, as `labeler calibrate` does for single labels) is fitted on the human-labelled
items whose annotation has that element: right when the human annotation has it too (EMPTY: when the human
chose no label either). A label the LLM left out has no stored share (the samples are not kept), so the
calibrators speak of the chosen labels, which are what the item's confidence and routing use.

    element_data(...)       pure: element name -> (item ids, confidences, right 0/1)
    calibrated_item(...)    pure: the item's calibrated confidence, the lowest calibrated element confidence
    fit_elements(...)       per element name, the calibrator chosen on its items (labeler.confidence.run stores
                            it among the run's calibrators, named ELEMENT + element, and applies it)
    apply_elements(...)     write every item's calibrated confidence from the stored calibrators (also after
                            every combine: a resume keeps them)

Labelled items keep their out-of-fold values, so the numbers after calibration on them are honest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from labeler.confidence.elements import EMPTY
from labeler.errors import CalibrationError
from labeler.store import RunStore
from labeler.store.rows import StoredCalibrator
from labeler.tasktypes import TaskType

if TYPE_CHECKING:
    from labeler.confidence.calibrators import Selection
    from labeler.config import TaskConfig

ELEMENT = "element:"  # prefix of the stored calibrators' method names: "element:label sport"


def element_data(
    llm: Mapping[str, Mapping[str, float]], human: Mapping[str, Any], kind: TaskType
) -> dict[str, tuple[list[str], list[float], list[int]]]:
    """Per element name: the ids of the items whose LLM element confidences (`llm`: item -> element ->
    confidence) have it and a human annotation (`human`: item -> decoded annotation), their confidences, and
    1 where the human annotation has the element too (EMPTY: is empty too), else 0."""
    out: dict[str, tuple[list[str], list[float], list[int]]] = {}
    for item, dist in llm.items():
        if item not in human:
            continue
        theirs = set(kind.elements(human[item]))
        for element, conf in dist.items():
            right = not theirs if element == EMPTY else element in theirs
            ids, confs, oks = out.setdefault(element, ([], [], []))
            ids.append(item)
            confs.append(float(conf))
            oks.append(int(right))
    return out


def calibrated_item(dist: Mapping[str, float], calibrate: Callable[[str, float], float | None]) -> float | None:
    """The item's calibrated confidence: the lowest of its element confidences, each through its element's
    calibrator (`calibrate(element, confidence)`, None where the element has none: the confidence as it is);
    None for an item without element confidences."""
    values = []
    for e, c in dist.items():
        v = calibrate(e, float(c))
        values.append(float(c) if v is None else v)
    return min(values) if values else None


def _predictor(stored: StoredCalibrator) -> Callable[[float], float]:
    import numpy as np

    from labeler.confidence.calibrators import CalData, from_params

    cal = from_params(stored.kind, stored.params)
    return lambda c: float(cal.predict(CalData.from_confidence(np.asarray([c]), np.asarray([1])))[0])


def stored_elements(store: RunStore, names: Iterable[str]) -> dict[str, StoredCalibrator]:
    """element name -> its stored calibrator, for the element names of `names` that have one."""
    out = {}
    for name in names:
        c = store.calibrator(ELEMENT + name)
        if c is not None:
            out[name] = c
    return out


def element_names(task: TaskConfig) -> list[str]:
    return [f"label {lab}" for lab in task.label_names] + [EMPTY]


def apply_elements(store: RunStore, task: TaskConfig) -> int:
    """Write the calibrated confidence of every combined item with element confidences from the stored
    element calibrators (an element's out-of-fold value on an item it was fitted on). Returns the number
    of items written; 0 without a stored element calibrator."""
    stored = stored_elements(store, element_names(task))
    if not stored:
        return 0
    predict = {e: _predictor(c) for e, c in stored.items()}
    updates: list[tuple[str, float | None]] = []
    for row in store.combined_rows(labeled_only=True):
        if not row.distribution:
            continue
        item = row.item_id

        def own(e: str, conf: float, item: str = item) -> float | None:
            if e not in stored:
                return None
            oof = stored[e].out_of_fold.get(item)
            return float(oof) if oof is not None else predict[e](conf)

        updates.append((item, calibrated_item(row.distribution, own)))
    store.set_calibrated(updates)
    return len(updates)


def fit_elements(
    data: Mapping[str, tuple[Sequence[str], Sequence[float], Sequence[int]]],
    names: Sequence[str],
    *,
    n_splits: int,
    seed: int,
    min_items: int,
) -> dict[str, Selection | str]:
    """Per element name of `names`: the chosen calibrator (labeler.confidence.calibrators.select_calibrator on
    its items of `data`, see element_data) or why there is none."""
    from labeler.confidence.calibrators import CalData, select_calibrator

    out: dict[str, Selection | str] = {}
    for name in names:
        ids, conf, ok = data.get(name, ((), (), ()))
        if not ids:
            out[name] = "no human-labelled item has this element"
            continue
        try:
            out[name] = select_calibrator(
                CalData.from_confidence(conf, ok), n_splits=n_splits, seed=seed, min_items=min_items
            )
        except CalibrationError as exc:
            out[name] = str(exc)
    return out
