"""End to end on Ray Train: 2 CPU workers, gloo, DeepSpeed ZeRO-2; recovery from a dead worker and
from a restarted job, both landing on the same trajectory as an uninterrupted run; several runs in
one worker group, each with its own checkpoints and resume."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import ray.cloudpickle

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.trainer.config import TrainConfig
from cprec.trainer.fit import fit, fit_group
from cprec.trainer.loop import TrainHook, deepspeed_config

# The hooks below travel to Ray's workers, which cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class FailOnce(TrainHook):
    """The last worker raises once at `step` of every run; a marker in the run's output_dir lets the
    retry pass, as a crashed node would not come back."""

    def __init__(self, step: int):
        self.step = step

    def before_step(self, run, step, rank, world):
        if step == self.step and rank == world - 1:
            marker = storage.join(run.config.output_dir, ".injected-failure")
            if not storage.exists(marker):
                storage.write_json(marker, {"step": step})
                raise RuntimeError(f"injected failure at step {step}")

STEPS = 24


def config(build: Path, out: Path, **overrides) -> TrainConfig:
    cfg = TrainConfig(data_dir=str(build), output_dir=str(out), steps=STEPS, micro_batch_size=2, grad_accum=2)
    cfg.schedule.peak_lr = 3e-3
    cfg.schedule.mixture.warmup = cfg.schedule.mixture.stable = {
        "domain": 0.45,
        "mixed": 0.45,
        "catalog": 0.1,
    }
    cfg.schedule.mixture.annealing = {"mixed": 0.9, "catalog": 0.1}
    cfg.scaling.num_workers = 2
    cfg.scaling.cpus_per_worker = 0.5
    cfg.deepspeed.zero_stage = 2
    cfg.checkpoint.every = 8
    cfg.eval_every = 12
    cfg.eval_batches = 4
    cfg.log_every = 12
    for key, value in overrides.items():
        target = cfg
        *parents, leaf = key.split(".")
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, leaf, value)
    return cfg


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def baseline(ray_local, token_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    return fit(config(token_build, out)), out


def test_training_lowers_loss_reports_validation_and_exports_a_working_model(baseline):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, out = baseline
    steps = records(out)
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.5
    valid = [r["val_loss"] for r in steps if r.get("val_loss") is not None]
    assert len(valid) == 2 and valid[-1] < valid[0]
    assert result.metrics["val_loss"] == valid[-1]
    assert {"grad_norm", "tokens_per_s", "lr", "phase", "tokens_seen"} <= set(steps[-1])
    seen = [r["tokens_seen"] for r in steps]
    assert all(b > a for a, b in zip([0, *seen], seen))  # every step adds real tokens
    assert (out / "loss.png").stat().st_size > 0
    assert list((out / "tb").glob("events.out.tfevents.*"))

    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    prompt = tokenizer("History in Books:\n[Books]", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    assert (Path(result.model_dir) / "model.safetensors").exists()


def assert_same_run(out: Path, reference: Path) -> None:
    ours, theirs = records(out), records(reference)
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]
    assert [r["lr"] for r in ours] == pytest.approx([r["lr"] for r in theirs], rel=1e-9)
    # the same batches in the same order: the losses agree too, not just the schedule
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in theirs], rel=1e-4)
    # the token count survives the restore: it continues from the checkpoint, not from zero
    assert [r["tokens_seen"] for r in ours] == [r["tokens_seen"] for r in theirs]
    kinds = [{k: v for k, v in r.items() if k.startswith("blocks_")} for r in ours]
    assert kinds == [{k: v for k, v in r.items() if k.startswith("blocks_")} for r in theirs]


def test_a_dead_worker_resumes_from_the_last_checkpoint_and_a_finished_job_is_not_retrained(
    baseline, token_build, tmp_path
):
    _, reference = baseline
    result = fit(config(token_build, tmp_path), hooks=[FailOnce(13)])
    assert (tmp_path / ".injected-failure").exists()
    resumed = [r for r in records(tmp_path) if r["start_step"] > 0]
    assert resumed and {r["start_step"] for r in resumed} == {8}  # restored from the step-8 checkpoint
    assert_same_run(tmp_path, reference)
    assert result.metrics["step"] == STEPS

    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000016", "step-00000024"]
    before = (tmp_path / "metrics.jsonl").read_text()
    again = fit(config(token_build, tmp_path))  # same output_dir and steps: found finished
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert again.metrics["step"] == STEPS


@pytest.mark.slow
def test_a_restarted_job_resumes_instead_of_starting_over(baseline, token_build, tmp_path):
    _, reference = baseline
    with pytest.raises(CPRecError, match="injected failure"):
        fit(config(token_build, tmp_path, **{"checkpoint.max_failures": 0}), hooks=[FailOnce(18)])
    fit(config(token_build, tmp_path))  # the same output_dir: picks up its step-16 checkpoint
    assert {r["start_step"] for r in records(tmp_path) if r["step"] > 16} == {16}
    assert_same_run(tmp_path, reference)


def test_deepspeed_file_is_merged_but_cannot_change_the_batch_shape(tmp_path):
    extra = tmp_path / "ds.yaml"
    extra.write_text("zero_optimization:\n  reduce_bucket_size: 1000\n")
    cfg = config(tmp_path, tmp_path, **{"deepspeed.config": str(extra)})
    merged = deepspeed_config(cfg, world=2, bf16=False)
    assert merged["zero_optimization"] == {
        "stage": 2,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "reduce_bucket_size": 1000,
    }
    assert merged["train_batch_size"] == 8
    extra.write_text('{"train_batch_size": 64}')
    with pytest.raises(CPRecError, match="train_batch_size"):
        deepspeed_config(cfg, world=2, bf16=False)


def test_relative_paths_are_the_driver_s_not_the_workers(ray_local, token_build, tmp_path, monkeypatch):
    # Ray Train's workers do not run in the driver's directory: `cprec train data_dir=out/data` once
    # failed there with "no tokenizer in the data build" although the build was in place
    (tmp_path / "data").symlink_to(token_build, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    cfg = config(Path("data"), Path("out"), steps=2, **{"scaling.num_workers": 1, "checkpoint.every": 2})
    result = fit(cfg)
    assert result.model_dir == str(tmp_path / "out" / "model")
    assert (tmp_path / "out" / "model" / "config.json").exists()


def test_only_local_models_that_exist_are_made_absolute(tmp_path):
    from cprec.trainer.fit import with_absolute_paths

    hub = with_absolute_paths(config(Path("data"), Path("out"), model="Qwen/Qwen2.5-0.5B"))
    assert hub.model == "Qwen/Qwen2.5-0.5B" and hub.data_dir == str(Path.cwd() / "data")
    remote = with_absolute_paths(config("data", "s3://bucket/out", model=str(tmp_path)))
    assert remote.output_dir == "s3://bucket/out" and remote.model == str(tmp_path)


def test_an_output_dir_over_or_inside_an_input_is_refused_before_ray(tmp_path, monkeypatch):
    from cprec.core import raytools
    from cprec.core.config import load_config

    def init_ray(*args, **kwargs):
        raise AssertionError("Ray started before the paths were checked")

    monkeypatch.setattr(raytools, "init_ray", init_ray)
    data, model = tmp_path / "data", tmp_path / "run" / "model"
    data.mkdir()
    model.mkdir(parents=True)
    for out, base, message in [
        (data, "", f"output_dir {data} is the input {data}"),
        (data / "out", "", f"output_dir {data / 'out'} is inside the input {data}"),
        (tmp_path, "", f"input {data} is inside output_dir {tmp_path}"),
        (model.parent, str(model), f"input {model} is inside output_dir {model.parent}"),  # the export replaces it
    ]:
        with pytest.raises(CPRecError, match=message):
            fit(config(data, out, model=base))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "model", "run"]
    with pytest.raises(CPRecError, match=r"checkpoint\.name '\.\./x' is not a safe name"):
        load_config(TrainConfig, None, ["data_dir=d", "output_dir=o", "checkpoint.name=../x"])


def test_runs_of_one_worker_group_each_train_resume_and_export_on_their_own(ray_local, baseline, token_build, tmp_path):
    reference_result, reference = baseline
    short = {"steps": 6, "checkpoint.every": 3, "eval_every": 0, "log_every": 6}
    first = config(token_build, tmp_path / "first", **short, **{"checkpoint.name": "first"})
    second = config(token_build, tmp_path / "second", **short, **{"checkpoint.name": "second", "seed": 1})
    finished = config(token_build, reference)  # the baseline's run: found finished, not trained again
    before = (reference / "metrics.jsonl").read_text()
    results = fit_group([finished, first, second], hooks=[FailOnce(4)])
    assert (reference / "metrics.jsonl").read_text() == before
    assert results[0].metrics == reference_result.metrics
    for result, out in zip(results[1:], (tmp_path / "first", tmp_path / "second")):
        assert Path(result.model_dir, "model.safetensors").exists()
        steps = records(out)
        assert [r["step"] for r in steps] == list(range(1, 7))
        # each run failed once at step 4 and resumed from its own step-3 checkpoint
        assert {r["start_step"] for r in steps if r["step"] > 3} == {3}
        assert {"set_up", "restore", "steps", "save", "export"} <= set(result.seconds)
    assert records(tmp_path / "first")[0]["loss"] != records(tmp_path / "second")[0]["loss"]  # seeds differ

    alone = fit(dataclasses.replace(second, output_dir=str(tmp_path / "alone")))
    # a run trains the same in a group as alone
    assert [r["loss"] for r in records(tmp_path / "alone")] == pytest.approx(
        [r["loss"] for r in records(tmp_path / "second")], rel=1e-4
    )
    assert alone.metrics["step"] == 6


def test_a_group_refuses_runs_that_need_other_workers_or_share_an_output(tmp_path):
    one = config(tmp_path, tmp_path / "a")
    other = config(tmp_path, tmp_path / "b", **{"scaling.num_workers": 1})
    with pytest.raises(CPRecError, match="same scaling"):
        fit_group([one, other])
    with pytest.raises(CPRecError, match="distinct output_dirs"):
        fit_group([one, config(tmp_path, tmp_path / "a", seed=3)])
