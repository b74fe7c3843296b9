"""fit(config) and fit_group(configs): training runs on Ray Train (TorchTrainer) + DeepSpeed, each
exported in Hugging Face format; a group shares one worker group."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from cprec.core import storage
from cprec.core.config import config_digest
from cprec.core.errors import CPRecError
from cprec.trainer.config import TrainConfig
from cprec.trainer.loop import MODEL_DIR, RUN_RECORD, RunSpec, TrainHook, is_finished, train_group

log = logging.getLogger(__name__)
__all__ = ["MODEL_DIR", "TrainResult", "fit", "fit_group"]


@dataclass
class TrainResult:
    model_dir: str  # HF export: AutoModelForCausalLM / AutoTokenizer load it
    metrics: dict  # the last step's record, plus the last validation loss
    metrics_file: str  # one JSON line per step
    seconds: dict = field(default_factory=dict)  # wall seconds of each part of the run (loop.Clock)


def checkpoint_root(config: TrainConfig) -> str:
    """Where the run keeps its checkpoints: <checkpoint.storage_path>/<checkpoint.name>, or
    <output_dir>/checkpoints."""
    if config.checkpoint.storage_path:
        return storage.join(storage.absolute(config.checkpoint.storage_path), config.checkpoint.name)
    return storage.join(config.output_dir, "checkpoints")


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """Local data, output and model paths made absolute: the workers read them from elsewhere."""
    import dataclasses

    return dataclasses.replace(
        config,
        data_dir=storage.absolute(config.data_dir),
        output_dir=storage.absolute(config.output_dir),
        model=storage.absolute_if_present(config.model),
    )


def fit(config: TrainConfig, callbacks: list | None = None, hooks: Sequence[TrainHook] = ()) -> TrainResult:
    """Trains (or resumes, or finds finished) one run and exports it; see `fit_group`."""
    return fit_group([config], callbacks, hooks)[0]


def fit_group(
    configs: Sequence[TrainConfig], callbacks: list | None = None, hooks: Sequence[TrainHook] = ()
) -> list[TrainResult]:
    """Trains the runs one after another in one Ray Train worker group, so a run that follows another
    pays no worker start. Each run keeps its own output_dir, checkpoints, metrics and resume; runs found
    finished are not trained, and when all are, no worker starts. The runs must ask for the same workers.

    `callbacks`: Ray Train callbacks (e.g. Tune's TuneReportCallback when a Tune trial trains);
    `hooks`: TrainHooks run on the workers around every step (the tests inject failures with them).
    """
    import ray.train
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from cprec.core.raytools import init_ray
    from cprec.trainer.data import make_plan

    if not configs:
        return []
    configs = [with_absolute_paths(_validated(c)) for c in configs]
    outputs = [c.output_dir for c in configs]
    if len(set(outputs)) != len(outputs):
        raise CPRecError(f"the runs of one worker group need distinct output_dirs, got {outputs}")
    scaling = configs[0].scaling
    for config in configs[1:]:
        if config.scaling != scaling:
            raise CPRecError(
                f"the runs of one worker group need the same scaling: {config.checkpoint.name} asks for "
                f"{config.scaling}, {configs[0].checkpoint.name} for {scaling}"
            )
    for config in configs:
        # the run writes into output_dir and replaces output_dir/model: never over or inside what it reads
        model = config.model if not storage.is_local(config.model) or storage.local_path(config.model).exists() else ""
        if model and not storage.is_local(model) and not storage.exists(model):
            raise CPRecError(f"model not found at {model}")  # here, not in every worker
        storage.check_disjoint(config.output_dir, [config.data_dir, model], "output_dir")
    pending = [config for config in configs if not is_finished(config)]
    if pending:
        runs = [RunSpec(i, c, make_plan(c), checkpoint_root(c)) for i, c in enumerate(pending)]
        init_ray()
        resources = {"CPU": scaling.cpus_per_worker}
        if scaling.use_gpu:
            resources["GPU"] = 1
        first = pending[0]
        trainer = TorchTrainer(
            train_group,
            train_loop_config={"runs": runs, "hooks": list(hooks)},
            scaling_config=ScalingConfig(
                num_workers=scaling.num_workers,
                use_gpu=scaling.use_gpu,
                resources_per_worker=resources,
                placement_strategy=scaling.placement_strategy,
            ),
            run_config=RunConfig(
                # Ray Train's own records of the group; the runs' checkpoints are in their own storage
                name=first.checkpoint.name if len(runs) == 1 else f"group-{config_digest(outputs)}",
                storage_path=storage.join(checkpoint_root(first), "ray-train"),
                # each run's restarts, spent wherever in the group they are needed
                failure_config=FailureConfig(max_failures=sum(c.checkpoint.max_failures for c in pending)),
                callbacks=callbacks,
            ),
        )
        try:
            trainer.fit()
        except ray.train.TrainingFailedError as exc:
            raise CPRecError(f"training failed: {_root_message(exc)}") from exc
    return [_result(config, plot=config in pending) for config in configs]


def _validated(config: TrainConfig) -> TrainConfig:
    config.validate()
    return config


def _result(config: TrainConfig, plot: bool) -> TrainResult:
    from cprec.trainer.plots import plot_loss

    if not is_finished(config):
        raise CPRecError(f"training of {config.checkpoint.name} ended without its export in {config.output_dir}")
    metrics_file = storage.join(config.output_dir, "metrics.jsonl")
    loss_plot = storage.join(config.output_dir, "loss.png")
    if plot or not storage.exists(loss_plot):
        plot_loss(metrics_file, loss_plot)
    return TrainResult(
        model_dir=storage.join(config.output_dir, MODEL_DIR),
        metrics=_summary(metrics_file),
        metrics_file=metrics_file,
        seconds=storage.read_json(storage.join(config.output_dir, RUN_RECORD)).get("seconds", {}),
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
