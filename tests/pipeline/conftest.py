"""One smoke-preset run per test session, shared by the tests that read its stages."""

from __future__ import annotations

import pytest
from smallworld import HAND_WRITTEN_WORLD

from cprec.core.cli import main


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, ray_local):
    """`cprec run --preset smoke world=<the hand-written world>` into a fresh root; returns the root
    (report.md, run.json, stages). The generated world runs end to end in
    test_object_storage_cluster.py (-m slow), and to the corpus as a job in test_job_submit.py."""
    root = tmp_path_factory.mktemp("smoke-run")
    assert main(["run", "--preset", "smoke", f"world={HAND_WRITTEN_WORLD}", f"out_dir={root}"]) == 0
    return root
