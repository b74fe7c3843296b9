"""Fixtures of the evaluator tests (helpers in eval_fixtures.py, importable by name from any test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_fixtures import catalogue, tiny_model


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    texts = [row["text"] for domain in ("Garden", "Toys", "Crafts") for row in catalogue(domain, 40)]
    return tiny_model(tmp_path_factory.mktemp("tiny_lm"), ["History in Garden:\n" + "\n".join(texts)] + texts)
