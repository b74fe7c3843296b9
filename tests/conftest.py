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
def ray_local(s3):
    """One local Ray instance for the whole test session (starting Ray costs seconds). After `s3`:
    Ray's workers inherit the environment at start, and a test that reads object storage in a
    worker may run after others started Ray."""
    import ray

    from cprec.core.raytools import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """An S3-compatible server on 127.0.0.1 for the session, its AWS variables set in this process
    (Ray workers started afterwards inherit them); tests create their own buckets (`s3.bucket`).
    Models read from it are cached in the session's temporary directory, not ~/.cache."""
    from objectstore import S3Server

    with S3Server() as server:
        env = {**server.env, "CPREC_CACHE_DIR": str(tmp_path_factory.mktemp("cprec-cache"))}
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield server
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
