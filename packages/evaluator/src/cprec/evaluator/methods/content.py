"""Content-based baseline: TF-IDF cosine between a user's history text and each item's text.

The bar any text-based recommender must clear (docs/design.md §7). The vectorizer is fitted on the
catalogue's item texts (the template's text, the same the LLM sees); a user's profile is the sum
of their history items' L2-normalised TF-IDF vectors, and an item's score is its cosine to it.
"""

from __future__ import annotations

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from cprec.evaluator.datasets import SplitDataset
from cprec.evaluator.methods import Method, history_matrix


class ContentTfidf(Method):
    runs_in_task = True

    def fit(self, dataset: SplitDataset) -> None:
        vectorizer = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
        self.item_vectors = normalize(vectorizer.fit_transform(dataset.item_texts))

    def score(self, dataset, split, users, candidates=None):
        profiles = normalize(history_matrix(dataset, split, users) @ self.item_vectors)
        return {"": (profiles @ self.item_vectors.T).toarray().astype("float32")}
