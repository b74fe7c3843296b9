"""The cluster files are checked against the schemas their consumers apply, and every job entrypoint
(in the KubeRay manifests and in docs/clusters.md) against the real `cprec` parser and config classes.

Launcher YAML: Ray's own ray-schema.json (what `ray up` validates with). KubeRay manifests: the subset of
the ray.io/v1 CRDs we use, in kuberay_schema.json. No Ray is started here.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from cprec.core.cli import STAGES, build_parser
from cprec.core.config import load_config

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = REPO / "clusters"
KUBERAY = CLUSTERS / "kuberay"
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
    cluster, job = load(KUBERAY / "raycluster.yaml"), load(KUBERAY / "rayjob-data.yaml")
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


def test_docs_submit_every_stage():
    stages = {shlex.split(entry)[2] for _, entry in docs_entrypoints()}
    assert {"cprec.data_prep", "cprec.trainer", "cprec.evaluator", "cprec.pipeline"} <= stages


@pytest.mark.parametrize("where,entrypoint", ENTRYPOINTS, ids=[f"{w}:{e.split()[2]}" for w, e in ENTRYPOINTS])
def test_entrypoint_parses_and_its_overrides_exist(where, entrypoint):
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "-m"], f"{where}: entrypoints run `python -m cprec.<stage>`"
    module, rest = argv[2], argv[3:]
    assert module in MODULE_PREFIX and importlib.util.find_spec(f"{module}.__main__"), f"{where}: {module}"
    stage = (MODULE_PREFIX[module] or rest)[0]
    stage_module = next(m for name, m, _ in STAGES if name == stage)
    assert importlib.util.find_spec(stage_module) is not None, f"{where}: {stage_module} (`cprec {stage}`) is missing"
    args = build_parser().parse_args(MODULE_PREFIX[module] + rest)
    assert not hasattr(args, "rest"), f"{where}: `{entrypoint}` names a stage whose package is not installed"
    command = tuple(
        part for part in (args.stage, getattr(args, f"{args.stage}_command", None)) if part is not None
    )
    module_name, class_name = COMMAND_CONFIG[command].split(":")
    config_module = importlib.import_module(module_name)
    config_cls = getattr(config_module, class_name)

    config_path = None
    if args.config:
        config_path = REPO / args.config.removeprefix(IMAGE_ROOT)
        assert config_path.is_file(), f"{where}: config {args.config} is not in the repository"
        if args.config.startswith(IMAGE_ROOT):  # the image must hold it: a directory the Dockerfile copies
            copied = re.findall(
                r"^COPY\s+(?:--\S+\s+)*(\S+)", (KUBERAY / "Dockerfile").read_text(), re.MULTILINE
            )
            relative = args.config.removeprefix(IMAGE_ROOT)
            assert any(relative.startswith(c.rstrip("/") + "/") for c in copied), f"{relative} not in image"
    base = None
    if getattr(args, "preset", None):
        from cprec.pipeline.presets import load_preset

        base = load_preset(args.preset)
        if command == ("tune",):  # as tune_cli does: a tune reads only some of a preset's sections
            from cprec.pipeline.tune import preset_sections

            base = preset_sections(base)
    load_config(config_cls, config_path, args.overrides, base=base)
