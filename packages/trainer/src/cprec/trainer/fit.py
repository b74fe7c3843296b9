"""fit(config): continual pre-training on Ray Train (TorchTrainer) + DeepSpeed, then the HF export."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.trainer.config import TrainConfig

log = logging.getLogger(__name__)
MODEL_DIR = "model"


@dataclass
class TrainResult:
    model_dir: str  # HF export: AutoModelForCausalLM / AutoTokenizer load it
    metrics: dict  # the last step's record, plus the last validation loss
    metrics_file: str  # one JSON line per step


def run_storage(config: TrainConfig) -> str:
    return storage.absolute(config.checkpoint.storage_path or storage.join(config.output_dir, "runs"))


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """Local data, output and model paths made absolute: the workers read them from elsewhere."""
    import dataclasses

    return dataclasses.replace(
        config,
        data_dir=storage.absolute(config.data_dir),
        output_dir=storage.absolute(config.output_dir),
        model=storage.absolute_if_present(config.model),
    )


def fit(config: TrainConfig, callbacks: list | None = None) -> TrainResult:
    """Trains (or resumes, or finds finished) the run `checkpoint.name` in its storage, and exports it.

    `callbacks`: Ray Train callbacks for the run, e.g. Tune's TuneReportCallback when a Tune trial trains.
    """
    import ray.train
    from ray.data import DataContext
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from cprec.core.raytools import init_ray
    from cprec.trainer.data import DatasetFactory, make_plan
    from cprec.trainer.loop import EXPORT_DIR, train_loop

    config.validate()
    config = with_absolute_paths(config)
    # the run writes into output_dir and replaces output_dir/model: never over or inside what it reads
    model = config.model if not storage.is_local(config.model) or storage.local_path(config.model).exists() else ""
    if model and not storage.is_local(model) and not storage.exists(model):
        raise CPRecError(f"model not found at {model}")  # here, not in every worker
    storage.check_disjoint(config.output_dir, [config.data_dir, model], "output_dir")
    plan = make_plan(config)
    init_ray()
    DataContext.get_current().enable_progress_bars = False
    DataContext.get_current().print_on_execution_start = False

    storage_path = run_storage(config)
    hint_uri = storage.join(config.output_dir, f".resume-{config.checkpoint.name}.json")
    if not storage.exists(storage.join(storage_path, config.checkpoint.name)) and storage.exists(hint_uri):
        storage.filesystem(hint_uri)[0].delete_file(
            storage.filesystem(hint_uri)[1]
        )  # a stale hint of a deleted run
    options = DataConfig.default_ingest_options()
    options.preserve_order = True  # the stream order is part of what makes resume exact
    resources = {"CPU": config.scaling.cpus_per_worker}
    if config.scaling.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": config, "plan": plan, "hint_uri": hint_uri},
        scaling_config=ScalingConfig(
            num_workers=config.scaling.num_workers,
            use_gpu=config.scaling.use_gpu,
            resources_per_worker=resources,
            placement_strategy=config.scaling.placement_strategy,
        ),
        run_config=RunConfig(
            name=config.checkpoint.name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoint.num_to_keep),
            failure_config=FailureConfig(max_failures=config.checkpoint.max_failures),
            callbacks=callbacks,
        ),
        datasets=DatasetFactory(plan, hint_uri).datasets(),
        dataset_config=DataConfig(datasets_to_split=[], execution_options=options),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise CPRecError(f"training failed: {_root_message(exc)}") from exc
    if result.checkpoint is None:
        raise CPRecError(f"training of {config.checkpoint.name} ended without a checkpoint in {storage_path}")
    model_dir = storage.join(config.output_dir, MODEL_DIR)
    with result.checkpoint.as_directory() as directory:
        export = Path(directory) / EXPORT_DIR
        if not export.is_dir():
            raise CPRecError(f"the last checkpoint of {config.checkpoint.name} holds no model export")
        _publish(export, model_dir)
    metrics_file = storage.join(config.output_dir, "metrics.jsonl")
    metrics = _summary(metrics_file)
    from cprec.trainer.plots import plot_loss

    plot_loss(metrics_file, storage.join(config.output_dir, "loss.png"))
    return TrainResult(model_dir=model_dir, metrics=metrics, metrics_file=metrics_file)


def _publish(export: Path, model_dir: str) -> None:
    with storage.atomic_output(model_dir, "train fit") as staging:
        if storage.is_local(staging):
            shutil.copytree(export, staging, dirs_exist_ok=True)
        else:
            import pyarrow.fs as pafs

            fs, path = storage.filesystem(staging)
            pafs.copy_files(
                str(export), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
            )


def _summary(metrics_file: str) -> dict:
    fs, path = storage.filesystem(metrics_file)
    with fs.open_input_stream(path) as stream:
        records = [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]
    if not records:
        return {}
    summary = dict(records[-1])
    summary["first_loss"] = records[0]["loss"]
    valid = [r["val_loss"] for r in records if r.get("val_loss") is not None]
    if valid:
        summary["val_loss"] = valid[-1]
        summary["first_val_loss"] = valid[0]
    return summary


def _root_message(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in reversed(text.splitlines()):
        if "CPRecError" in line:
            return line.split("CPRecError:", 1)[-1].strip()
    return text.splitlines()[-1] if text else type(exc).__name__
