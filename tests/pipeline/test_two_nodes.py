"""Nothing assumes a single node: a head and a worker node (each with its own resources) run the smoke
data build as a job, then a two-worker training job with one worker per node, checkpointing to storage
both nodes reach (a local directory: both nodes live on this machine)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from localcluster import LocalRayCluster
from test_job_submit import check_data_output, data_dir_of, smoke_data_entrypoint, submit

pytestmark = pytest.mark.slow

STATE_PROBE = """
import json, sys
from ray.util.state import list_actors, list_nodes
url = sys.argv[1]
nodes = {n.node_id: n.resources_total for n in list_nodes(address=url, detail=True)}
workers = list_actors(address=url, filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=100)
print(json.dumps({"nodes": nodes, "worker_nodes": [a.node_id for a in workers]}))
"""


def test_data_build_and_two_worker_training_across_two_nodes(tmp_path):
    with LocalRayCluster(nodes=[{"CPU": 2, "head_node": 1}, {"CPU": 2, "worker_node": 1}]) as cluster:
        result = submit(cluster, smoke_data_entrypoint(tmp_path / "run"))
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        data = data_dir_of(tmp_path / "run")
        check_data_output(data)

        storage = tmp_path / "shared-storage"
        train = (
            f"python -m cprec.trainer fit data_dir={data} output_dir={tmp_path / 'cpt'} steps=6 "
            "micro_batch_size=2 eval_every=0 log_every=2 checkpoint.every=3 "
            f"checkpoint.storage_path={storage} scaling.num_workers=2 scaling.cpus_per_worker=0.5 "
            "scaling.placement_strategy=STRICT_SPREAD tiny.hidden_size=32 tiny.intermediate_size=64"
        )
        result = submit(cluster, train)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

        probe = subprocess.run(
            [sys.executable, "-c", STATE_PROBE, cluster.dashboard_url],
            env=cluster.env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        state = json.loads(probe.stdout.strip().splitlines()[-1])

    assert len(state["nodes"]) == 2
    assert {"head_node", "worker_node"} <= {key for r in state["nodes"].values() for key in r}
    # One training worker on each node (STRICT_SPREAD), not both on the head.
    assert len(state["worker_nodes"]) >= 2 and set(state["worker_nodes"]) == set(state["nodes"])

    assert (tmp_path / "cpt" / "model" / "config.json").is_file()
    assert (tmp_path / "cpt" / "model" / "_SUCCESS").is_file()
    checkpoints = sorted((storage / "cprec-train").glob("step-*"))
    assert checkpoints, f"no checkpoint in the shared storage {storage}"
    records = [json.loads(line) for line in (tmp_path / "cpt" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 6
