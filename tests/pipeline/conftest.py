"""One smoke-preset run per test session, shared by the tests that read its stages."""

from __future__ import annotations

import pytest

from cprec.core.cli import main


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, ray_local):
    """`cprec run --preset smoke` into a fresh root; returns the root (report.md, run.json, stages)."""
    root = tmp_path_factory.mktemp("smoke-run")
    assert main(["run", "--preset", "smoke", f"out_dir={root}"]) == 0
    return root
