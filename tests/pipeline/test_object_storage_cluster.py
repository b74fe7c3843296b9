"""A cluster that behaves like a real one: a head and a worker node that shares no local disk with it
(its own mount namespace, an empty tmpfs over /tmp and ~/.cache), both reaching an S3-compatible
object store on 127.0.0.1 through the standard AWS variables of their environment. `cprec run` and
`cprec tune` are submitted with `ray job submit` and write only to the bucket, so anything that
hands a local path from one node to another fails here as it would on a cluster."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time

import pyarrow.fs as pafs
import pytest
from localcluster import LocalRayCluster, can_isolate
from objectstore import S3Server
from test_job_submit import submit
from test_two_nodes import STATE_PROBE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not can_isolate(), reason="needs root and mount namespaces (unshare) for the worker node"),
]

# Runs in a driver on this machine; `where` is a custom resource of one node, so each probe lands there.
PROBE = """
import json, os, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
paths, bucket = json.loads(sys.argv[2]), sys.argv[3]

@ray.remote(num_cpus=0)
def look():
    import pyarrow.fs as pafs
    s3 = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"])  # credentials from the env
    cache = os.environ["CPREC_CACHE_DIR"]
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "seen": {p: os.path.exists(p) for p in paths},
        "bucket": [i.path for i in s3.get_file_info(pafs.FileSelector(bucket, recursive=True))],
        "cache": cache,
        "cached": sorted(os.listdir(cache)) if os.path.isdir(cache) else [],
    }

print(json.dumps({where: ray.get(look.options(resources={where: 0.01}).remote()) for where in ("head_node", "worker_node")}))
"""


def s3fs(store: S3Server) -> pafs.S3FileSystem:
    env = store.env
    return pafs.S3FileSystem(
        endpoint_override=env["AWS_ENDPOINT_URL"], access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"], region=env["AWS_DEFAULT_REGION"],
    )  # fmt: skip


def read_text(store: S3Server, uri: str) -> str:
    with s3fs(store).open_input_stream(uri.removeprefix("s3://")) as stream:
        return stream.read().decode()


def listing(store: S3Server, uri: str) -> list[str]:
    """Every file under `uri`, as s3:// URIs."""
    infos = s3fs(store).get_file_info(pafs.FileSelector(uri.removeprefix("s3://"), recursive=True))
    return sorted("s3://" + i.path for i in infos if i.type == pafs.FileType.File)


@pytest.fixture(scope="module")
def store():
    with S3Server() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(store, tmp_path_factory):
    # Per-node caches: the head's in the test's tmp area, the worker's inside its own hidden /tmp.
    node_env = {
        0: {"CPREC_CACHE_DIR": str(tmp_path_factory.mktemp("head-cache"))},
        1: {"CPREC_CACHE_DIR": "/tmp/cprec-cache"},
    }
    nodes = [{"CPU": 2, "head_node": 1}, {"CPU": 2, "worker_node": 1}]
    with LocalRayCluster(nodes=nodes, env=store.env, node_env=node_env, isolated=(1,)) as ray_cluster:
        yield ray_cluster


def look_from_each_node(cluster: LocalRayCluster, paths: list[str], bucket: str) -> tuple[dict, dict]:
    """What a Ray task on the head and one on the worker node see: `paths`, `bucket`, their cache."""
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, cluster.address, json.dumps(paths), bucket.removeprefix("s3://")],
        env=cluster.env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    return seen["head_node"], seen["worker_node"]


def test_worker_node_sees_the_bucket_but_not_the_heads_disk(cluster, store, tmp_path):
    bucket = store.bucket("probe")
    with s3fs(store).open_output_stream("probe/hello.txt") as stream:
        stream.write(b"hi")
    written = tmp_path / "written-by-the-test.txt"
    written.write_text("local only")
    paths = [str(written), str(cluster.temp_root / "ray"), sys.executable]
    head, worker = look_from_each_node(cluster, paths, bucket)
    assert head["node"] != worker["node"]
    assert head["seen"] == {str(written): True, str(cluster.temp_root / "ray"): True, sys.executable: True}
    assert worker["seen"] == {str(written): False, str(cluster.temp_root / "ray"): False, sys.executable: True}
    assert head["bucket"] == worker["bucket"] == ["probe/hello.txt"]
    assert worker["cache"] == "/tmp/cprec-cache" and head["cache"] != worker["cache"]


# Every stage at its smallest: a smaller world, two data partitions, fewer steps, few users, one
# ablation variant (on the main corpus: the format control's second corpus would double the data
# build). Every training runs two workers, one per node (STRICT_SPREAD), so one of them always
# trains on the isolated node. `cprec tune` shares these options, so it reuses the run's stages.
# The default world's skewed item appeal leaves catalogues of this toy size under 20 items after
# k-core cleaning (Garden: 19), so the evaluation ranks at K = 5 and 10 only.
SHARED_OVERRIDES = (
    "synth.users=100 synth.retail_users=60 synth.items_per_domain=30 synth.retail_items=40 data.partitions=2 "
    "base.steps=6 train.scaling.num_workers=2 train.scaling.placement_strategy=STRICT_SPREAD 'eval.ks=[5,10]'"
)
RUN_OVERRIDES = (
    f"{SHARED_OVERRIDES} cpt.steps=6 sft.train.steps=4 eval.max_users=8 eval.bootstrap=50 eval.sasrec.epochs=2 "
    "'variants=[{name: CPT constant, train: {schedule: {warmup: 0.1, stable: 0.9, annealing: 0.0}}}]'"
)


def training_worker_nodes(cluster: LocalRayCluster) -> dict:
    probe = subprocess.run(
        [sys.executable, "-c", STATE_PROBE, cluster.dashboard_url],
        env=cluster.env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(probe.stdout.strip().splitlines()[-1])


def test_smoke_run_into_the_bucket(cluster, store):
    root = store.bucket("run") + "/smoke"
    started = time.monotonic()
    result = submit(
        cluster, f"python -m cprec.pipeline run --preset smoke out_dir={root} {RUN_OVERRIDES}", timeout=1800
    )
    print(f"cprec run job: {time.monotonic() - started:.0f}s")
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "succeeded" in result.stdout

    run = json.loads(read_text(store, f"{root}/run.json"))
    stages = run["stages"]
    print("stage seconds:", {name: stage["seconds"] for name, stage in stages.items()})
    names = list(stages)
    assert names[:7] == ["world", "data", "downstream", "profile", "base", "cpt", "variant-cpt-constant"]
    # smoke fine-tunes the base and CPRec on the world's first downstream dataset, in one worker group
    [sft_data, *tunings, last] = names[7:]
    assert sft_data.startswith("sft-data-") and last == "eval"
    dataset = sft_data.removeprefix("sft-data-")
    assert tunings == [f"sft-base-{dataset}", f"sft-cprec-{dataset}"]
    assert all(stage["path"].startswith(f"{root}/") and not stage["reused"] for stage in stages.values())
    files = listing(store, root)
    for stage in stages.values():
        assert f"{stage['path']}/_STAGE.json" in files
    for model in [stages[name] for name in ("base", "cpt", "variant-cpt-constant", *tunings)]:
        assert {f"{model['path']}/model/config.json", f"{model['path']}/model/_SUCCESS"} <= set(files)
    report = read_text(store, f"{root}/report.md")
    assert "CPRec zero-shot" in report and "CPT constant zero-shot" in report
    assert "World: the generated world" in report and "| pre-training |" in report  # profiled from the bucket
    assert f"{stages['profile']['path']}/profile.json" in files

    # One training worker on each node: the isolated one trained from and checkpointed to the bucket.
    state = training_worker_nodes(cluster)
    assert len(state["nodes"]) == 2 and set(state["worker_nodes"]) == set(state["nodes"])
    # ...reading the tokenizer and models through its own node-local cache.
    _, worker = look_from_each_node(cluster, [], root)
    assert worker["cached"], "nothing was copied into the worker node's cache"


def test_two_trial_tune_into_the_bucket(cluster, store):
    # The same root and training options as the run above: its world, data and base model are reused.
    root = store.bucket("run") + "/smoke"
    tune = (
        f"python -m cprec.pipeline tune --preset smoke out_dir={root} {SHARED_OVERRIDES} "
        "points=[[0.1,0.6,0.3],[0.3,0.2,0.5]] cpt.steps=6 report_every=3 eval.max_users=8"
    )
    started = time.monotonic()
    result = submit(cluster, tune, timeout=1800)
    print(f"cprec tune job: {time.monotonic() - started:.0f}s")
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "succeeded" in result.stdout and "[cprec tune] best:" in result.stdout

    experiment = f"{root}/tune"
    files = listing(store, experiment)
    names = {f.removeprefix(experiment + "/") for f in files}
    assert {"tuner.pkl", "trials.csv", "trials.md", "simplex.png", "best_train.yaml", "cprec_tune_space.json"} <= names
    assert any(n.startswith("experiment_state-") for n in names)
    rows = list(csv.DictReader(io.StringIO(read_text(store, f"{experiment}/trials.csv"))))
    assert len(rows) == 2 and all(r["status"] in ("finished", "stopped early") for r in rows)
    finished = [r for r in rows if r["status"] == "finished"]
    assert finished and all(0 <= float(r["objective"]) <= 1 and r["step"] == "6" for r in finished)
    for row in finished:
        assert f"{experiment}/work/{row['trial']}/eval/results.json" in files
        assert f"{experiment}/work/{row['trial']}/train/model/_SUCCESS" in files
