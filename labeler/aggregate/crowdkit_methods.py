"""GLAD and MACE from crowd-kit (Toloka's library of crowdsourcing aggregation), imported when
called: crowd-kit pulls pandas, and its package imports transformers, which costs seconds at start-up.

crowd-kit 1.4.2 calls pandas methods with `inplace=True`, which pandas 3.1 deprecates (Pandas4Warning):
the calls still work and are silenced here, around crowd-kit only. MACE runs `n_restarts` EM restarts
with pandas inside the loop: 10 restarts took 110 s on 300 items x 4 annotators on the 2-core VM, so we
run 2; GLAD took 10 s on the same data and 150 s on 1,000 items x 5 annotators. Dawid–Skene is our own
(labeler.aggregate.dawid_skene says why); crowd-kit's stays reachable here as the test oracle.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from labeler.aggregate.table import Annotations, Consensus, finish

MACE_RESTARTS = 2


def _frame(ann: Annotations) -> Any:
    import pandas as pd

    ii, jj = np.nonzero(ann.answered)
    return pd.DataFrame(
        {
            "task": [ann.items[i] for i in ii],
            "worker": [ann.annotators[j] for j in jj],
            "label": [ann.classes[k] for k in ann.labels[ii, jj]],
        }
    )


def _model(method: str, seed: int) -> Any:
    from crowdkit.aggregation import GLAD, MACE, DawidSkene

    if method == "dawid_skene":
        return DawidSkene(n_iter=200, tol=1e-6)
    if method == "glad":
        return GLAD(n_iter=100, silent=True)
    if method == "mace":
        return MACE(n_restarts=MACE_RESTARTS, n_iter=50, random_state=seed)
    raise ValueError(f"crowd-kit method {method!r}")


def crowdkit(ann: Annotations, method: str, *, seed: int = 0) -> Consensus:
    """`method` ("dawid_skene", "glad", "mace") fitted by crowd-kit; posterior = its `probas_`."""
    if not ann.answered.any():
        return finish(method, ann, np.zeros((len(ann.items), len(ann.classes))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pandas' Pandas4Warning (see the module docstring)
        warnings.simplefilter("ignore", FutureWarning)
        model = _model(method, seed)
        model.fit(_frame(ann))
        probas = model.probas_
    probas = probas.reindex(index=list(ann.items), columns=list(ann.classes))
    return finish(method, ann, probas.to_numpy(dtype=float, na_value=0.0))
