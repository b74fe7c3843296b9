"""Most popular first: the count of each item in the training split, the same for every user."""

from __future__ import annotations

import numpy as np

from cprec.evaluator.datasets import SplitDataset
from cprec.evaluator.methods import Method


class Popularity(Method):
    runs_in_task = True

    def fit(self, dataset: SplitDataset) -> None:
        self.counts = dataset.train_counts().astype(np.float32)

    def score(self, dataset, split, users, candidates=None):
        return {"": np.broadcast_to(self.counts, (len(users), dataset.n_items)).copy()}
