"""Calibration per label (multi-label) and per entity type (spans): element confidences mapped to P(right).

An element of an annotation is one chosen label ("label sport"), one typed span ("span 4-12 PER 'Lovelace'")
or, for an empty annotation, EMPTY (labeler.confidence.elements); its confidence is the share of the samples
(members) that produced it too. Elements are pooled by their task type's calibration group
(`TaskType.calibration_group`: the label itself; a span's entity type, "type PER"; EMPTY alone), and per group
a calibrator of labeler.confidence.calibrators (temperature, Platt or isotonic, chosen by cross-validated
log-loss, as `labeler calibrate` does for single labels) is fitted on the human-labelled items' elements:
right when the human annotation has the element too (a span: the same offsets and type; EMPTY: when the human
annotation is empty too).

What the LLM left out is outside these calibrators: a label it did not choose or a span it missed has no
confidence (the samples are not kept, and a missed span has no share to map), so the calibrators speak of the
produced elements, which are what the item's confidence and routing use; the evaluator's recall (per label,
per type) covers what was missed. A span item with several spans of one type gives one point per span (the
folds split points, so spans of one item may fall in different folds).

    element_data(...)       pure: group -> (out-of-fold keys, confidences, right 0/1)
    calibrated_item(...)    pure: the item's calibrated confidence, the lowest calibrated element confidence
    fit_elements(...)       per group, the calibrator chosen on its elements (labeler.confidence.run stores it
                            among the run's calibrators, named ELEMENT + group)
    put_element_rows(...)   every combine: each row's element confidences through the stored calibrators (so
                            routing's low-confidence reasons name calibrated values), the lowest as the item's
                            calibrated confidence; rows as they are without a stored calibrator

Labelled items keep their out-of-fold values, so the numbers after calibration on them are honest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from labeler.confidence.elements import EMPTY
from labeler.errors import CalibrationError
from labeler.store import RunStore
from labeler.store.rows import CombinedRow, StoredCalibrator
from labeler.tasktypes import TaskType

if TYPE_CHECKING:
    from labeler.confidence.calibrators import Selection

ELEMENT = "element:"  # prefix of the stored calibrators' method names: "element:label sport", "element:type PER"


def oof_key(item: str, element: str, group: str) -> str:
    """The key of one element's out-of-fold value: the item id where the group is the element (a label: one per
    item), else the item id and the element (an item may have several spans of one type)."""
    return item if element == group else f"{item} {element}"


def element_data(
    llm: Mapping[str, Mapping[str, float]], human: Mapping[str, Any], kind: TaskType
) -> dict[str, tuple[list[str], list[float], list[int]]]:
    """Per calibration group: the out-of-fold keys (`oof_key`) of the elements of the items whose LLM element
    confidences (`llm`: item -> element -> confidence) fall in it and that have a human annotation (`human`:
    item -> decoded annotation), their confidences, and 1 where the human annotation has the element too
    (EMPTY: is empty too), else 0."""
    out: dict[str, tuple[list[str], list[float], list[int]]] = {}
    for item, dist in llm.items():
        if item not in human:
            continue
        theirs = set(kind.elements(human[item]))
        for element, conf in dist.items():
            right = not theirs if element == EMPTY else element in theirs
            group = kind.calibration_group(element)
            keys, confs, oks = out.setdefault(group, ([], [], []))
            keys.append(oof_key(item, element, group))
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
    # element confidences are vote shares: few distinct values, so each is predicted once
    return functools.lru_cache(maxsize=4096)(
        lambda c: float(cal.predict(CalData.from_confidence(np.asarray([c]), np.asarray([1])))[0]))


def stored_elements(store: RunStore, names: Iterable[str]) -> dict[str, StoredCalibrator]:
    """group name -> its stored calibrator, for the group names of `names` that have one."""
    out = {}
    for name in names:
        c = store.calibrator(ELEMENT + name)
        if c is not None:
            out[name] = c
    return out


def element_names(kind: TaskType) -> list[str]:
    """The calibration groups of a task type's elements, EMPTY included."""
    return [*kind.calibration_groups(), EMPTY]


def element_calibration(store: RunStore, kind: TaskType) -> Callable[[str, str, float], float | None] | None:
    """`calibrate(item, element, confidence)` from the stored group calibrators: the element's out-of-fold value
    where it was fitted on, else its group calibrator's prediction, None for an element whose group has none;
    None without any stored group calibrator."""
    stored = stored_elements(store, element_names(kind))
    if not stored:
        return None
    predict = {g: _predictor(c) for g, c in stored.items()}

    def calibrate(item: str, element: str, conf: float) -> float | None:
        group = kind.calibration_group(element)
        if group not in stored:
            return None
        oof = stored[group].out_of_fold.get(oof_key(item, element, group))
        return float(oof) if oof is not None else predict[group](conf)

    return calibrate


def put_element_rows(store: RunStore, kind: TaskType, rows: Iterable[CombinedRow], *, signature: str) -> int:
    """Store the combined rows of an element-scored run (`store.put_combined`), each row's element confidences
    through the stored group calibrators and the lowest of them as its calibrated confidence. Returns the
    row count."""
    calibrate = element_calibration(store, kind)
    if calibrate is None:
        return store.put_combined(rows, signature=signature)
    lowest: list[tuple[str, float | None]] = []

    def through(rows: Iterable[CombinedRow]) -> Iterator[CombinedRow]:
        for row in rows:
            if row.label is None or not row.distribution:
                yield row
                continue
            dist = {e: float(c) if (v := calibrate(row.item_id, e, float(c))) is None else v
                    for e, c in row.distribution.items()}
            lowest.append((row.item_id, calibrated_item(dist, lambda e, c: None)))
            yield replace(row, distribution=dist)

    n = store.put_combined(through(rows), signature=signature)
    store.set_calibrated(lowest)
    return n


def fit_elements(
    data: Mapping[str, tuple[Sequence[str], Sequence[float], Sequence[int]]],
    names: Sequence[str],
    *,
    n_splits: int,
    seed: int,
    min_items: int,
) -> dict[str, Selection | str]:
    """Per group name of `names`: the chosen calibrator (labeler.confidence.calibrators.select_calibrator on
    its elements in `data`, see element_data) or why there is none."""
    from labeler.confidence.calibrators import CalData, select_calibrator

    out: dict[str, Selection | str] = {}
    for name in names:
        ids, conf, ok = data.get(name, ((), (), ()))
        if not ids:
            out[name] = "no human-labelled item has an element of this group"
            continue
        try:
            out[name] = select_calibrator(
                CalData.from_confidence(conf, ok), n_splits=n_splits, seed=seed, min_items=min_items
            )
        except CalibrationError as exc:
            out[name] = str(exc)
    return out
