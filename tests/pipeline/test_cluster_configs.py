"""The cluster files are checked against the schemas their consumers apply, and every job entrypoint
(in the KubeRay manifests and in docs/clusters.md) against the real `cprec` parser and config classes:
the `cluster` preset, which those jobs run, against the nodes and pods of every cluster file.

Launcher YAML: Ray's own ray-schema.json (what `ray up` validates with). KubeRay manifests: the subset of
the ray.io/v1 CRDs we use, in kuberay_schema.json. No Ray is started here.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cprec.core.cli import STAGES, build_parser
from cprec.core.config import load_config

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = REPO / "clusters"
KUBERAY = CLUSTERS / "kuberay"
WORLD = CLUSTERS / "world.json"  # the example world of the `cluster` preset's job (docs/clusters.md)
DOCS = REPO / "docs" / "clusters.md"
IMAGE_ROOT = "/home/ray/cprec/"  # WORKDIR of clusters/kuberay/Dockerfile: the repository root in the image
LAUNCHER_FILES = ["aws.yaml", "gcp.yaml"]
MANIFESTS = sorted(p.name for p in KUBERAY.glob("*.yaml"))

# `python -m <module>` runs `cprec <prefix...>` (each package's __main__.py).
MODULE_PREFIX = {
    "cprec.data_prep": ["data"],
    "cprec.trainer": ["train"],
    "cprec.evaluator": ["eval"],
    "cprec.pipeline": [],
}
# The config class behind each command, as "module:Class".
COMMAND_CONFIG = {
    ("data", "synth"): "cprec.data_prep.synth:SynthConfig",
    ("data", "build"): "cprec.data_prep.build:BuildConfig",
    ("train", "fit"): "cprec.trainer.config:TrainConfig",
    ("eval",): "cprec.evaluator.config:EvalConfig",
    ("run",): "cprec.pipeline.config:RunConfig",
    ("tune",): "cprec.pipeline.tune:TuneConfig",
}


def launcher_schema() -> dict:
    # Found without importing ray (seconds): the schema ships inside the installed wheel.
    ray_dir = Path(importlib.util.find_spec("ray").submodule_search_locations[0])
    return json.loads((ray_dir / "autoscaler" / "ray-schema.json").read_text())


def kuberay_schema() -> dict:
    return json.loads((Path(__file__).with_name("kuberay_schema.json")).read_text())


def errors(schema: dict, document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# --- cluster launcher -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_yaml_matches_rays_schema(name):
    assert errors(launcher_schema(), load(CLUSTERS / name)) == []


def test_launcher_schema_catches_a_misspelt_or_mistyped_key():
    config = load(CLUSTERS / "aws.yaml")
    misspelt = copy.deepcopy(config)
    misspelt["worker_start_ray_command"] = misspelt.pop("worker_start_ray_commands")
    mistyped = copy.deepcopy(config)
    mistyped["available_node_types"]["gpu_worker"]["max_workers"] = "4"
    nested = copy.deepcopy(config)
    nested["available_node_types"]["cpu_worker"]["min_worker"] = 0
    for broken in (misspelt, mistyped, nested):
        assert errors(launcher_schema(), broken), "the schema should reject this config"


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_cluster_shape_and_token(name):
    config = load(CLUSTERS / name)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types[config["head_node_type"]]["resources"].get("CPU") == 0, "the head should not run tasks"
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert {"cpu_worker", "gpu_worker"} <= set(workers)
    for node_type in workers.values():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"]

    # Token authentication: the token file reaches every node, every `ray start` runs in token mode,
    # and the dashboard/job server binds to localhost on the head (reached through `ray dashboard`).
    assert "~/.ray/auth_token" in config["file_mounts"]
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in ray_starts)
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    assert "disabled" not in (CLUSTERS / name).read_text()

    # Every package of the monorepo is installed on the nodes.
    packages = sorted(p.parent.name for p in (REPO / "packages").glob("*/pyproject.toml"))
    setup = " ".join(config["setup_commands"])
    assert [p for p in packages if f"-e packages/{p}" not in setup] == []


def test_gcp_node_types_declare_resources_and_gce_scheduling():
    # GCE machine types are not auto-detected by the launcher (AWS instance types are), and `scheduling`
    # is an object in the GCE API; ray-schema.json leaves node_config open, so both are checked here.
    types = load(CLUSTERS / "gcp.yaml")["available_node_types"]
    assert types["cpu_worker"]["resources"]["CPU"] > 0
    gpu = types["gpu_worker"]
    assert gpu["resources"]["GPU"] == sum(
        a["acceleratorCount"] for a in gpu["node_config"]["guestAccelerators"]
    )
    for node_type in types.values():
        scheduling = node_type["node_config"].get("scheduling", {})
        assert isinstance(scheduling, dict)
        if scheduling.get("preemptible"):
            assert scheduling["onHostMaintenance"] == "TERMINATE" and scheduling["automaticRestart"] is False
    assert gpu["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE"


# --- KubeRay ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MANIFESTS)
def test_kuberay_manifest_matches_crd_schema(name):
    assert errors(kuberay_schema(), load(KUBERAY / name)) == []


def test_kuberay_schema_catches_mistakes():
    cluster, job = load(KUBERAY / "raycluster.yaml"), load(KUBERAY / "rayjob-run.yaml")
    broken = []
    b = copy.deepcopy(cluster)
    b["spec"]["workerGroupSpec"] = b["spec"].pop("workerGroupSpecs")  # misspelt
    broken.append(b)
    b = copy.deepcopy(cluster)
    b["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # map[string]string: must be "0"
    broken.append(b)
    b = copy.deepcopy(cluster)
    b["spec"]["authOptions"]["mode"] = "Token"
    broken.append(b)
    b = copy.deepcopy(cluster)
    b["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    broken.append(b)
    b = copy.deepcopy(job)
    b["spec"]["submissionMode"] = "K8sJob"
    broken.append(b)
    b = copy.deepcopy(job)
    b["spec"]["backoffLimit"] = 1  # KubeRay rejects retries with clusterSelector
    broken.append(b)
    b = copy.deepcopy(job)
    b["spec"]["runtimeEnvYaml"] = b["spec"].pop("runtimeEnvYAML")
    broken.append(b)
    for document in broken:
        assert errors(kuberay_schema(), document), "the schema should reject this manifest"


def test_kuberay_cluster_keeps_token_auth_and_matches_the_image():
    cluster = load(KUBERAY / "raycluster.yaml")
    assert cluster["spec"]["authOptions"]["mode"] == "token"
    ray_version = importlib.metadata.version("ray")
    assert cluster["spec"]["rayVersion"] == ray_version
    base_image = re.search(
        r"^FROM rayproject/ray:(\S+)", (KUBERAY / "Dockerfile").read_text(), re.MULTILINE
    ).group(1)
    assert base_image.startswith(f"{ray_version}-py311")
    names = {cluster["metadata"]["name"]}
    for name in MANIFESTS:
        manifest = load(KUBERAY / name)
        if manifest["kind"] == "RayJob":
            assert manifest["spec"]["clusterSelector"]["ray.io/cluster"] in names, name
    for path in CLUSTERS.rglob("*"):
        if path.is_file():
            assert not re.search(r"RAY_AUTH_MODE\W+disabled|mode:\s*disabled", path.read_text()), path


# --- entrypoints ------------------------------------------------------------------------------------


def manifest_entrypoints() -> list[tuple[str, str]]:
    found = []
    for name in MANIFESTS:
        manifest = load(KUBERAY / name)
        if manifest["kind"] == "RayJob":
            found.append((name, manifest["spec"]["entrypoint"]))
    return found


def docs_entrypoints() -> list[tuple[str, str]]:
    """The command after ` -- ` of every `ray job submit` in the docs' code blocks."""
    found, language, block = [], None, []
    for line in DOCS.read_text().splitlines():
        if line.startswith("```"):
            if language is None:
                language, block = line[3:].strip(), []
                continue
            if language in ("bash", "sh", ""):
                for command in "\n".join(block).replace("\\\n", " ").splitlines():
                    if "ray job submit" in command and " -- " in command:
                        found.append(("docs/clusters.md", command.split(" -- ", 1)[1].strip()))
            language = None
        elif language is not None:
            block.append(line)
    return found


ENTRYPOINTS = manifest_entrypoints() + docs_entrypoints()


def test_the_cluster_workflow_is_one_run_of_the_cluster_preset():
    # The RayJob and the docs submit `cprec run --preset cluster` over the example world, uploaded to the
    # bucket; every such job (the whole run, or a stage-by-stage one with `until=`) has the same out_dir,
    # so each finds the stages the one before wrote.
    def cluster_runs(entrypoints):
        found = []
        for where, entrypoint in entrypoints:
            args, command = parse_entry(entrypoint)
            if command == ("run",) and args.preset == "cluster":
                found.append((where, loaded(entrypoint)[1]))
        return found

    manifest_runs, docs_runs = cluster_runs(manifest_entrypoints()), cluster_runs(docs_entrypoints())
    assert len(manifest_runs) == 1 and docs_runs
    job = manifest_runs[0][1]
    assert job.until == "report", "the RayJob runs the whole recipe"
    assert job.world.startswith(("s3://", "gs://")) and job.world.endswith("/world.json")
    assert job.out_dir.startswith(("s3://", "gs://"))
    for where, run in docs_runs:
        assert (run.world, run.out_dir) == (job.world, job.out_dir), where
    assert any(run.until == "report" for _, run in docs_runs), "the docs submit the whole recipe"
    jobs = [name for name in MANIFESTS if name.startswith("rayjob-") and name != "rayjob-tune.yaml"]
    assert jobs == [manifest_runs[0][0]], "one RayJob runs the recipe, not one per stage"


def test_the_example_world_names_real_sources_on_object_storage():
    # clusters/world.json is what the job's world= names once copied to the bucket: the seven Amazon
    # Reviews 2023 pre-training domains, and five downstream datasets on two platforms, none of them a
    # pre-training domain; every source loads as the data build and the evaluator load it.
    from cprec.core.world import load_world
    from cprec.evaluator.config import DatasetConfig

    world = load_world(str(WORLD))
    sources = [*world["pretrain"], *(entry["source"] for entry in world["downstream"])]
    for entry in world["downstream"]:
        load_config(DatasetConfig, base=entry)
    for source in sources:
        loaded_source = load_config(type(DatasetConfig().source), base=source)
        getattr(loaded_source, "validate", lambda: None)()
        assert source["path"].startswith(("s3://", "gs://")), source
    pretrain = [d for entry in world["pretrain"] for d in entry["domains"]]
    downstream = [d for entry in world["downstream"] for d in entry["source"].get("domains", [])]
    assert len(pretrain) == 7 and {e["format"] for e in world["pretrain"]} == {"amazon2023"}
    assert len(world["downstream"]) == 5 and {e["platform"] for e in world["downstream"]} == {"marketplace", "retail"}
    assert not set(pretrain) & set(downstream)


def parse_entry(entrypoint: str) -> tuple[argparse.Namespace, tuple[str, ...]]:
    """The parsed `cprec` arguments of a `python -m cprec.<stage> ...` entrypoint, and its command."""
    argv = shlex.split(entrypoint)
    args = build_parser().parse_args(MODULE_PREFIX[argv[2]] + argv[3:])
    return args, tuple(p for p in (args.stage, getattr(args, f"{args.stage}_command", None)) if p is not None)


@functools.cache
def loaded(entrypoint: str) -> tuple[tuple[str, ...], Any]:
    """The command of an entrypoint and its config, loaded as `cprec` loads it (preset, --config, overrides)."""
    args, command = parse_entry(entrypoint)
    module_name, class_name = COMMAND_CONFIG[command].split(":")
    config_cls = getattr(importlib.import_module(module_name), class_name)
    config_path = REPO / args.config.removeprefix(IMAGE_ROOT) if args.config else None
    base = None
    if getattr(args, "preset", None):
        from cprec.pipeline.presets import load_preset

        base = load_preset(args.preset)
        if command == ("tune",):  # as tune_cli does: a tune reads only some of a preset's sections
            from cprec.pipeline.tune import preset_sections

            base = preset_sections(base)
    return command, load_config(config_cls, config_path, args.overrides, base=base)


@pytest.mark.parametrize("where,entrypoint", ENTRYPOINTS, ids=[f"{w}:{e.split()[2]}" for w, e in ENTRYPOINTS])
def test_entrypoint_parses_and_its_overrides_exist(where, entrypoint):
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "-m"], f"{where}: entrypoints run `python -m cprec.<stage>`"
    module, rest = argv[2], argv[3:]
    assert module in MODULE_PREFIX and importlib.util.find_spec(f"{module}.__main__"), f"{where}: {module}"
    stage = (MODULE_PREFIX[module] or rest)[0]
    stage_module = next(m for name, m, _ in STAGES if name == stage)
    assert importlib.util.find_spec(stage_module) is not None, f"{where}: {stage_module} (`cprec {stage}`) is missing"
    args, command = parse_entry(entrypoint)
    assert not hasattr(args, "rest"), f"{where}: `{entrypoint}` names a stage whose package is not installed"
    assert command in COMMAND_CONFIG, f"{where}: {command}"
    if args.config:
        config_path = REPO / args.config.removeprefix(IMAGE_ROOT)
        assert config_path.is_file(), f"{where}: config {args.config} is not in the repository"
        if args.config.startswith(IMAGE_ROOT):  # the image must hold it: a directory the Dockerfile copies
            copied = re.findall(
                r"^COPY\s+(?:--\S+\s+)*(\S+)", (KUBERAY / "Dockerfile").read_text(), re.MULTILINE
            )
            relative = args.config.removeprefix(IMAGE_ROOT)
            assert any(relative.startswith(c.rstrip("/") + "/") for c in copied), f"{relative} not in image"
    loaded(entrypoint)


# --- what the jobs ask of the nodes -----------------------------------------------------------------

CLUSTER_FILES = [*LAUNCHER_FILES, "kuberay/raycluster.yaml"]
# vCPUs and GPUs of the AWS instance types in aws.yaml (EC2's instance-type pages): the launcher reads
# them off the type (`resources: {}`), so the test needs them here; keys a node type declares win.
AWS_INSTANCES = {"m6i.2xlarge": (8, 0), "m6i.4xlarge": (16, 0), "p4de.24xlarge": (96, 8)}
# The Python an image ships, read off what names it: an AWS AMI by the Ubuntu release in the comment
# after its ImageId (Ubuntu's python3), a GCP Deep Learning VM family and a rayproject/ray tag by
# their `-py<major><minor>` (common-cu128-ubuntu-2204-py310, 2.60.0-py311-gpu).
UBUNTU_PYTHON = {"20.04": (3, 8), "22.04": (3, 10), "24.04": (3, 12)}
FIXED = {"data_dir": "d", "output_dir": "o"}  # paths a stage fills in; they do not change the shapes


def node_shapes(name: str) -> dict[str, tuple[float, int, int]]:
    """Each worker type of a cluster file: CPUs and GPUs of one node or pod, and the most the autoscaler starts."""
    doc = load(CLUSTERS / name)
    if doc.get("kind") == "RayCluster":
        shapes = {}
        for group in doc["spec"]["workerGroupSpecs"]:
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            cpu = str(limits["cpu"])
            cpus = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
            shapes[group["groupName"]] = (cpus, int(limits.get("nvidia.com/gpu", 0)), group["maxReplicas"])
        return shapes
    shapes = {}
    for type_name, node_type in doc["available_node_types"].items():
        if type_name != doc["head_node_type"]:
            cpus, gpus = (0, 0)
            if doc["provider"]["type"] == "aws":
                cpus, gpus = AWS_INSTANCES[node_type["node_config"]["InstanceType"]]
            declared = node_type["resources"]
            shapes[type_name] = (declared.get("CPU", cpus), declared.get("GPU", gpus), node_type["max_workers"])
    return shapes


def node_setup(config: dict, type_name: str) -> list[str]:
    """The commands `ray up` runs on a node of this type: a type's own worker_setup_commands replace the rest."""
    if type_name == config["head_node_type"]:
        return config["setup_commands"] + config.get("head_setup_commands", [])
    default = config["setup_commands"] + config.get("worker_setup_commands", [])
    return config["available_node_types"][type_name].get("worker_setup_commands", default)


def sft_train(sft: Any) -> dict:
    """The TrainConfig options of a run's fine-tuning runs: `train` of its `sft` section."""
    section = sft.get("train") if isinstance(sft, dict) else getattr(sft, "train", None)
    return dict(section or {})


def train_configs(command: tuple[str, ...], config: Any) -> list:
    """The TrainConfig of every training run a job starts (a run's and a tune's as run.py / tune.py layer them)."""
    from cprec.core.config import layered
    from cprec.trainer.config import TrainConfig

    if command == ("train", "fit"):
        return [config]
    if command not in (("run",), ("tune",)):
        return []
    sections = [config.base, config.cpt]
    if command == ("run",):  # only the stages up to `until` run
        from cprec.pipeline.config import STAGES as RUN_STAGES

        reached = RUN_STAGES[: RUN_STAGES.index(config.until) + 1]
        sections = [config.base] if "base" in reached else []
        if "cpt" in reached:
            sections += [config.cpt, *(layered(config.cpt, v.train) for v in config.variants)]
        if {"sft", "eval"} & set(reached):
            sections.append(sft_train(config.sft))
    return [load_config(TrainConfig, base=layered(config.train, s, FIXED)) for s in sections]


def evaluation(command: tuple[str, ...], config: Any) -> Any:
    """The EvalConfig of the evaluation a job runs (a run's: its `eval` section), or None."""
    from cprec.core.config import layered
    from cprec.evaluator.config import EvalConfig

    if command == ("eval",):
        return config
    if command == ("run",) and config.until in ("eval", "report"):
        return load_config(EvalConfig, base=layered(config.eval, {"world": config.world or "w.json"}))
    return None


def test_every_training_run_fits_one_node_of_each_cluster():
    # Workers x CPUs and GPUs per worker within one node/pod of a type, not just the cluster's total:
    # otherwise the worker group spreads over nodes (4 + 4 GPUs over the network). Ray Train's
    # controller takes no CPU (Train V2: num_cpus=0, on the driver's node), so nothing else is counted.
    # Every entrypoint is held against every cluster file: each of them can run every job.
    misfits, checked = [], 0
    for cluster in CLUSTER_FILES:
        shapes = node_shapes(cluster)
        for where, entrypoint in ENTRYPOINTS:
            for train in train_configs(*loaded(entrypoint)):
                scaling, checked = train.scaling, checked + 1
                gpus = scaling.num_workers if scaling.use_gpu else 0
                cpus = scaling.num_workers * scaling.cpus_per_worker
                pool = [(c, g) for c, g, _ in shapes.values() if (g > 0) == (gpus > 0)]
                if not any(cpus <= c and gpus <= g for c, g in pool):
                    misfits.append(f"{cluster} {pool}: {where} `{entrypoint}` needs {cpus:g} CPUs, {gpus} GPUs")
    assert checked and misfits == []


def test_every_evaluation_fits_the_nodes_of_each_cluster():
    # The LLM scorers (one GPU each on a GPU node) run together, so all of them must fit one node of the
    # GPU pool; each baseline task (`baseline_cpus`) must fit one CPU node.
    misfits, checked = [], 0
    for cluster in CLUSTER_FILES:
        shapes = node_shapes(cluster).values()
        for where, entrypoint in ENTRYPOINTS:
            evaluation_config = evaluation(*loaded(entrypoint))
            if evaluation_config is None:
                continue
            llm, checked = evaluation_config.llm, checked + 1
            if llm.num_actors:
                gpus = llm.num_actors if llm.device in ("cuda", "auto") else 0
                cpus = llm.num_actors * llm.cpus_per_actor
                if not any(cpus <= c and gpus <= g and (g > 0) == (gpus > 0) for c, g, _ in shapes):
                    misfits.append(f"{cluster}: {where} scorers need {cpus:g} CPUs, {gpus} GPUs")
            cpu_nodes = [c for c, g, _ in shapes if not g]
            if not any(evaluation_config.baseline_cpus <= c for c in cpu_nodes):
                misfits.append(f"{cluster}: {where} baselines need {evaluation_config.baseline_cpus:g} CPUs")
    assert checked and misfits == []


def test_cluster_jobs_keep_checkpoints_and_outputs_on_object_storage():
    # Ray Train storage must be reachable from every node: each rank writes its DeepSpeed shards there and
    # a restarted worker group may land on other nodes. Checkpoints go to `checkpoint.storage_path`, or
    # with '' under the run's output directory, so a job's out_dir (or storage_path) is object storage.
    for where, entrypoint in ENTRYPOINTS:
        command, config = loaded(entrypoint)
        for train in train_configs(command, config):
            output = config.out_dir if command in (("run",), ("tune",)) else train.output_dir
            storage = train.checkpoint.storage_path or output
            assert storage.startswith(("s3://", "gs://")), f"{where}: checkpoints at {storage!r}"


def test_tune_trials_use_the_gpus_the_job_reserves_for_them():
    # A tune's max_concurrent_trials (set by hand: the GPU pool starts empty) must be what the GPU pool
    # holds when every node runs as many trials as fit it, counted as tune.py counts a trial (its
    # function, its trainer's workers and Ray Data reads, or its scorers), and those trials' trainers
    # must use every GPU of the node: no GPU the job counts on sits idle, none is counted twice.
    from cprec.core.config import layered
    from cprec.pipeline.tune import trials_at_once
    from cprec.trainer.config import TrainConfig

    tunes = [(w, e) for w, e in ENTRYPOINTS if loaded(e)[0] == ("tune",)]
    assert tunes
    for cluster in CLUSTER_FILES:
        gpu_nodes = [(c, g, n) for c, g, n in node_shapes(cluster).values() if g]
        for where, entrypoint in tunes:
            config = loaded(entrypoint)[1]
            cpt = load_config(TrainConfig, base=layered(config.train, config.cpt, FIXED))
            trial_gpus = cpt.scaling.num_workers if cpt.scaling.use_gpu else 0
            assert trial_gpus, f"{where}: a tune on the GPU pool trains on CPUs"
            uncapped = dataclasses.replace(config, max_concurrent_trials=0)
            per_node = [trials_at_once(uncapped, cpt, config.eval, {"CPU": c, "GPU": g}) for c, g, _ in gpu_nodes]
            for trials, (_, gpus, _) in zip(per_node, gpu_nodes):
                used = trials * trial_gpus
                assert used == gpus, f"{cluster}, {where}: {trials} trials on a node use {used} of its {gpus} GPUs"
            holds = sum(trials * n for trials, (_, _, n) in zip(per_node, gpu_nodes))
            assert config.max_concurrent_trials == holds, f"{cluster}, {where}: the GPU pool holds {holds} trials"


def required_python() -> tuple[int, int]:
    found = []
    for pyproject in (REPO / "packages").glob("*/pyproject.toml"):
        spec = tomllib.loads(pyproject.read_text())["project"]["requires-python"]
        found.append(tuple(int(x) for x in re.fullmatch(r">=\s*(\d+)\.(\d+)", spec).groups()))
    return max(found)


def py_suffix(name: str) -> tuple[int, int]:
    major, minor = re.search(r"-py(\d)(\d+)\b", name).groups()
    return int(major), int(minor)


def test_every_node_runs_a_python_the_packages_accept():
    needed, found = required_python(), {}
    for name in LAUNCHER_FILES:
        text, config = (CLUSTERS / name).read_text(), load(CLUSTERS / name)
        for type_name, node_type in config["available_node_types"].items():
            node_config = node_type["node_config"]
            if "ImageId" in node_config:
                release = re.search(rf"ImageId: {node_config['ImageId']}\s*#.*Ubuntu (\d\d\.\d\d)", text).group(1)
                python = UBUNTU_PYTHON[release]
            else:
                python = py_suffix(node_config["disks"][0]["initializeParams"]["sourceImage"])
            # Or the setup's own: a uv-installed interpreter in the venv that ~/.bashrc puts first on PATH,
            # with every install going into that venv (no system pip).
            setup = " ".join(node_setup(config, type_name))
            installed = re.search(r"uv python install (\d)\.(\d+)", setup)
            if installed:
                version = ".".join(installed.groups())
                assert f"uv venv --python {version} ~/venv" in setup and "PATH=$HOME/venv/bin:" in setup, name
                assert not re.search(r"(?<!uv )pip install", setup), f"{name}: {type_name} installs outside the venv"
                python = tuple(map(int, installed.groups()))
            found[f"{name}:{type_name}"] = python
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    found["kuberay/Dockerfile"] = py_suffix(re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE).group(1))
    assert {where: python for where, python in found.items() if python < needed} == {}


def test_gpu_nodes_install_the_gpu_extra_and_gpu_configs_use_it():
    extra = "packages/trainer[gpu]"  # liger-kernel: the fused cross-entropy and `liger_kernels`
    trainer = tomllib.loads((REPO / "packages/trainer/pyproject.toml").read_text())
    assert any(d.startswith("liger-kernel") for d in trainer["project"]["optional-dependencies"]["gpu"])
    for name in LAUNCHER_FILES:
        config = load(CLUSTERS / name)
        for type_name, (_, gpus, _) in node_shapes(name).items():
            if gpus:
                assert extra in " ".join(node_setup(config, type_name)), f"{name}: {type_name}"
    install = re.search(r"^RUN (.*?)(?<!\\)$", (KUBERAY / "Dockerfile").read_text(), re.MULTILINE | re.DOTALL)
    assert extra in install.group(1)
    cluster = load(KUBERAY / "raycluster.yaml")["spec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    images = {c["image"] for g in groups for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1, "every pod runs the one image the Dockerfile builds"
    # The GPU trainings of a job on a real model (the `cluster` preset's: its base is a hub model) turn
    # liger's decoder kernels on; the tiny presets, measured without them in docs/results.md, leave them off.
    gpu_trains = []
    for where, entrypoint in ENTRYPOINTS:
        trains = train_configs(*loaded(entrypoint))
        if any(train.model for train in trains):
            gpu_trains += [(where, train) for train in trains if train.scaling.use_gpu]
    assert gpu_trains and [where for where, train in gpu_trains if not train.liger_kernels] == []


def test_models_are_read_from_object_storage_not_a_local_mount():
    # No cluster file mounts a model directory, so a job reads a hub id or what a job before it exported
    # to object storage (a run's own stages under its out_dir, a train job's <output_dir>/model); nothing
    # names a node-local path like /mnt/models.
    from cprec.pipeline.presets import PRESET_DIR

    for path in [*CLUSTERS.rglob("*"), DOCS, PRESET_DIR / "cluster.yaml"]:
        if path.is_file():
            assert "/mnt/" not in path.read_text(), path
    exports, models = set(), []
    for where, entrypoint in ENTRYPOINTS:
        command, config = loaded(entrypoint)
        if command == ("train", "fit"):
            exports.add(config.output_dir.rstrip("/") + "/model")
        trains = train_configs(command, config)
        if command in (("run",), ("tune",)) and trains:
            assert config.out_dir.startswith(("s3://", "gs://")), f"{where}: stages and models at {config.out_dir!r}"
            exports.add(config.out_dir.rstrip("/") + "/")
        models += [(where, train.model) for train in trains if train.model]
        if command == ("eval",):
            models += [(where, m.model) for m in config.methods if getattr(m, "model", "")]
    assert models
    for where, model in models:
        if "://" in model:
            assert any(model == e or (e.endswith("/") and model.startswith(e)) for e in exports), (
                f"{where}: {model} is not what a job before it exports ({exports})"
            )
        else:
            assert re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model), f"{where}: {model} is not a hub id"
