"""A real Ray head on 127.0.0.1 with token authentication; the smoke data build submitted with
`ray job submit`, as on a cluster (docs/clusters.md)."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from localcluster import RAY, LocalRayCluster

REPO = Path(__file__).resolve().parents[2]
RUNTIME_ENV = {"excludes": [".git", ".venv", "runs", "**/__pycache__"], "env_vars": {"PYTHONUNBUFFERED": "1"}}


def submit(cluster: LocalRayCluster, entrypoint: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`ray job submit` as a user runs it: streams the logs, exits 0 only if the job succeeded."""
    command = [
        RAY, "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(REPO),
        "--runtime-env-json", json.dumps(RUNTIME_ENV), "--", *shlex.split(entrypoint),
    ]  # fmt: skip
    return subprocess.run(
        command, env=cluster.env, capture_output=True, text=True, timeout=timeout, check=False
    )


def smoke_data_entrypoint(out_dir: Path) -> str:
    return f"python -m cprec.pipeline run --preset smoke until=data out_dir={out_dir}"


def data_dir_of(run_root: Path) -> Path:
    """`cprec run` writes each stage under <root>/<stage>-<digest>; run.json names the pre-training build."""
    stages = json.loads((run_root / "run.json").read_text())["stages"]
    return Path(stages["data"]["path"])


def check_data_output(data: Path) -> None:
    for name in ("items.parquet", "stats.json", "_SUCCESS", "tokenizer", "tokens", "interactions"):
        assert (data / name).exists(), f"{data} lacks {name}"
    assert pq.read_table(data / "items.parquet").num_rows > 0
    shards = list((data / "tokens" / "train").rglob("*.parquet"))
    assert shards and sum(pq.ParquetFile(s).metadata.num_rows for s in shards) > 0
    stats = json.loads((data / "stats.json").read_text())
    assert stats["kept"]["events"] > 0


def other_addresses() -> list[str]:
    return [
        a.address
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]


@pytest.fixture(scope="module")
def head():
    with LocalRayCluster(nodes=[{"CPU": 2}]) as cluster:
        yield cluster


def test_job_server_requires_the_token_and_listens_on_localhost_only(head):
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{head.dashboard_url}/api/jobs/", timeout=10)
    assert denied.value.code in (401, 403)

    addresses = other_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    for address in addresses:
        with pytest.raises(OSError), socket.create_connection((address, head.dashboard_port), timeout=3):
            pass


def test_smoke_data_build_as_a_job(head, tmp_path):
    result = submit(head, smoke_data_entrypoint(tmp_path / "run"))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "succeeded" in result.stdout
    check_data_output(data_dir_of(tmp_path / "run"))


def test_failed_job_fails_the_submit(head, tmp_path):
    # A bad config is a one-line error in the job's log and a non-zero exit of `ray job submit`.
    result = submit(head, f"python -m cprec.data_prep build out_dir={tmp_path / 'x'}", timeout=120)
    assert result.returncode != 0
    assert "cprec: error: nothing to build" in result.stdout + result.stderr
