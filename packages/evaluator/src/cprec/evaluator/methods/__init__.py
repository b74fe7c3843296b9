"""Recommenders behind one interface: fit on a dataset's training split, score the catalogue.

`score` returns one [users, items] matrix per *variant* (higher = better). Most methods have one
variant (''); the LLM methods return one per score form (sum, mean, pmi), and the evaluator picks
the variant on validation. With the sampled protocol `candidates` [users, items] marks the only
items that will be ranked, so an expensive method may leave the others unscored (-inf).

`registry.METHODS` maps each method kind to its class; `make_method` builds one.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from cprec.evaluator.methods.registry import METHODS

if TYPE_CHECKING:
    import numpy as np

    from cprec.data_prep.downstream import SplitDataset
    from cprec.evaluator.config import EvalConfig, MethodConfig



class Method(ABC):
    # Baselines (True) fit and score in a Ray task on any CPU worker; the LLM methods stay in the
    # driver, which hands their heavy work to scoring actors.
    runs_in_task = False

    def __init__(self, spec: MethodConfig, config: EvalConfig):
        self.spec = spec
        self.config = config

    @abstractmethod
    def fit(self, dataset: SplitDataset) -> None:
        """Learns from `dataset.train` only (validation may be used for early stopping)."""

    @abstractmethod
    def score(
        self, dataset: SplitDataset, split: str, users: np.ndarray, candidates: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Scores of every catalogue item for `users` predicting `split` ('valid' or 'test')."""

    def variants(self) -> list[str]:
        """Variants `score` returns; a fixed choice means no selection on validation."""
        return [""]

    def info(self) -> dict:
        """What the report should record about the fitted method (chosen options, training curve...)."""
        return {}

    def close(self) -> None:
        """Releases what `fit` acquired (Ray actors, GPU memory)."""

    def attach(self, shared: dict) -> None:
        """Takes the evaluation's shared resources (name -> object with `close()`): a method that can
        share what it acquires with the other methods (the LLM methods' scoring actors) keeps it there,
        and the evaluation closes it."""

    def task_resources(self) -> dict:
        """Ray resources of the task that fits and scores a `runs_in_task` method."""
        return {"num_cpus": self.config.baseline_cpus}


def make_method(spec: MethodConfig, config: EvalConfig) -> Method:
    if spec.kind not in METHODS:
        raise ValueError(f"unknown method kind {spec.kind!r}")
    module, name = METHODS[spec.kind].split(":")
    return getattr(importlib.import_module(module), name)(spec, config)


def history_matrix(dataset: SplitDataset, split: str, users: np.ndarray):
    """A sparse [users, items] count matrix of what each user has seen before `split`'s target."""
    import numpy as np
    from scipy import sparse

    rows, cols = [], []
    for row, user in enumerate(users):
        history = dataset.history(split, int(user))
        rows.append(np.full(len(history), row))
        cols.append(history)
    rows_arr = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    cols_arr = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    data = np.ones(len(rows_arr), dtype=np.float32)
    return sparse.csr_matrix((data, (rows_arr, cols_arr)), shape=(len(users), dataset.n_items))
