"""Fixtures shared by every package's tests."""

from __future__ import annotations

import os

import pytest

# Keep Ray quiet and local in tests: no dashboard, no usage stats, logs deduplicated.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole test session (starting Ray costs seconds)."""
    import ray

    from cprec.core.raytools import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()
