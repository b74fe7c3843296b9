"""The per-worker training function run by Ray Train: DeepSpeed engines over the packed streams.

A worker group trains its runs one after another (fit.fit_group). Each run goes through named
steps: `set_up` (tokenizer, model, optimizer, DeepSpeed), `restore` (the run's newest complete
checkpoint, after a worker failure or a job restart), `train_step` (one optimizer step over exactly
the rows that come next, data.py), `validate`, `save` (a checkpoint in the run's own storage,
checkpoints.py), `export` (the Hugging Face model) and `tear_down`. Rank 0 writes the metrics, the
export and the run record (RUN_RECORD, with the seconds each part took).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.core.raytools import limit_torch_threads
from cprec.trainer import checkpoints
from cprec.trainer.config import TrainConfig
from cprec.trainer.data import Batches, DataPlan, train_stream, valid_stream

CHECKPOINT_TAG = "ds"
MODEL_DIR = "model"
RUN_RECORD = "train.json"  # written last: the run trained `steps` and exported its model
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # dense bf16, per GPU


def deepspeed_config(config: TrainConfig, world: int, bf16: bool) -> dict[str, Any]:
    """Our defaults with the user's DeepSpeed file merged on top; the batch shape stays ours."""
    ds = config.deepspeed
    defaults: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "train_batch_size": config.micro_batch_size * config.grad_accum * world,
        "gradient_clipping": ds.grad_clip,
        "zero_optimization": {"stage": ds.zero_stage, "overlap_comm": bf16, "contiguous_gradients": True},
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if not ds.config:
        return defaults
    user = _read_mapping(ds.config)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        if key in user and user[key] != defaults[key]:
            raise CPRecError(
                f"deepspeed.config {ds.config} sets {key}={user[key]}, but the batch shape comes from "
                f"micro_batch_size/grad_accum/scaling.num_workers (= {defaults[key]}); remove it from the file"
            )
    return _merge(defaults, user)


def _read_mapping(uri: str) -> dict:
    import yaml

    if not storage.exists(uri):
        raise CPRecError(f"deepspeed.config file not found: {uri}")
    fs, path = storage.filesystem(uri)
    with fs.open_input_stream(path) as stream:
        text = stream.read().decode()
    try:
        loaded = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise CPRecError(
            f"deepspeed.config {uri} is not valid JSON/YAML: {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(loaded, dict):
        raise CPRecError(f"deepspeed.config {uri} must hold a mapping")
    return loaded


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def peak_flops(config: TrainConfig, device) -> float | None:
    if config.peak_tflops > 0:
        return config.peak_tflops * 1e12
    if device.type == "cuda":
        import torch

        name = torch.cuda.get_device_name(device)
        for key, tflops in PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
    return None


def flops_per_token(model, block_len: int) -> float:
    """6N for the matmuls of forward and backward plus the attention scores (PaLM appendix B)."""
    params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    return 6 * params + 12 * cfg.num_hidden_layers * cfg.hidden_size * block_len


class MetricsLog:
    """metrics.jsonl (one line per step) and TensorBoard, written by rank 0; on resume the lines
    after the restored step are dropped, so the file reads as one uninterrupted run."""

    def __init__(self, output_dir: str, start_step: int):
        self.uri = storage.join(output_dir, "metrics.jsonl")
        self.local = storage.is_local(output_dir)
        self.lines: list[str] = []
        if start_step > 0 and storage.exists(self.uri):
            fs, path = storage.filesystem(self.uri)
            with fs.open_input_stream(path) as stream:
                text = stream.read().decode()
            self.lines = [
                line for line in text.splitlines() if line and json.loads(line)["step"] <= start_step
            ]
        tb_dir = (
            storage.local_path(storage.join(output_dir, "tb")) if self.local else Path(tempfile.mkdtemp())
        )
        self.tb_uri = storage.join(output_dir, "tb")
        self.tb_dir = tb_dir
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(tb_dir))
        self.flush()

    def add(self, record: dict) -> None:
        self.lines.append(json.dumps(record))
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                self.writer.add_scalar(key, value, record["step"])

    def flush(self) -> None:
        self.writer.flush()
        fs, path = storage.filesystem(self.uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(("\n".join(self.lines) + "\n" if self.lines else "").encode())
        if not self.local:
            import pyarrow.fs as pafs

            tb_fs, tb_path = storage.filesystem(self.tb_uri)
            pafs.copy_files(
                str(self.tb_dir),
                tb_path,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=tb_fs,
            )


def _quiet() -> None:
    """One progress line per N steps instead of Ray's, DeepSpeed's and transformers' chatter."""
    import warnings

    import ray.data
    import transformers

    for name in list(logging.root.manager.loggerDict):
        # some Ray Train modules name their logger by file path
        if name.startswith(("deepspeed", "DeepSpeed", "ray.train", "ray.data")) or "ray/train" in name:
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def _distributed_env(ctx) -> None:
    """DeepSpeed reads the launcher's variables even when it reuses Ray's process group."""
    os.environ["RANK"] = str(ctx.get_world_rank())
    os.environ["WORLD_SIZE"] = str(ctx.get_world_size())
    os.environ["LOCAL_RANK"] = str(ctx.get_local_rank())
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")


@dataclass
class RunSpec:
    """One training run of a worker group, as every worker receives it."""

    index: int  # its place in the group: prefixes its dataset names
    config: TrainConfig
    plan: DataPlan
    checkpoints: str  # the run's own checkpoint root (checkpoints.py)


class TrainHook:
    """Called on every worker around a run's steps; the tests inject failures with one. Hooks travel
    to the workers by pickle, so keep them small."""

    def before_step(self, run: RunSpec, step: int, rank: int, world: int) -> None:
        """Runs before optimizer step `step` (0-based); raising here fails the worker."""


@dataclass
class Session:
    """What a run trains with on one worker: built by `set_up`, torn down by `tear_down`."""

    run: RunSpec
    rank: int
    world: int
    device: Any
    tokenizer: Any
    model: Any  # the Hugging Face model inside the engine (what the export saves)
    engine: Any
    flops_per_token: float
    peak_flops: float | None
    eval_batches: int


def train_group(loop_config: dict) -> None:
    """The Ray Train function: the group's runs one after another in the same worker processes, so only
    the first pays for starting Ray Train, importing torch, DeepSpeed and transformers and joining the
    process group; a run found finished (by this or an earlier attempt) is skipped."""
    import ray.train
    import ray.train.torch

    runs: list[RunSpec] = loop_config["runs"]
    hooks: list[TrainHook] = loop_config.get("hooks") or []
    _quiet()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    _distributed_env(ctx)
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        limit_torch_threads(runs[0].config.scaling.cpus_per_worker)
    for run in runs:
        if _agreed(rank == 0 and is_finished(run.config), device):
            continue
        train_run(run, hooks, rank, world, device)


def is_finished(config: TrainConfig) -> bool:
    """The run's export is complete and its record says it trained all of `config.steps`."""
    record_uri = storage.join(config.output_dir, RUN_RECORD)
    if not storage.exists(storage.join(config.output_dir, MODEL_DIR, storage.SUCCESS_MARKER)):
        return False
    return storage.exists(record_uri) and storage.read_json(record_uri).get("steps") == config.steps


def _agreed(value: bool, device) -> bool:
    """Rank 0's `value` on every rank (the others' is ignored): workers must not disagree on which runs
    they train together."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([int(value)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def train_run(run: RunSpec, hooks: list[TrainHook], rank: int, world: int, device) -> None:
    """One run: set up, restore, train to `steps` (validating and saving as configured), export."""
    import gc

    config = run.config
    clock = Clock()
    with clock("set_up"):
        session = set_up(run, rank, world, device)
    with clock("restore"):
        start_step, tokens_seen = restore(session)
    batches, log = None, MetricsLog(config.output_dir, start_step) if rank == 0 else None
    if start_step < config.steps:
        with clock("data"):
            batches = open_batches(session, start_step)
    for step in range(start_step, config.steps):
        for hook in hooks:
            hook.before_step(run, step, rank, world)
        with clock("steps"):
            record = train_step(session, batches, step, start_step, tokens_seen)
        tokens_seen = record["tokens_seen"]
        done = step + 1
        final = done == config.steps
        if final or (config.eval_every and done % config.eval_every == 0):
            with clock("validate"):
                record["val_loss"] = validate(session)
        if log is not None:
            log.add(record)
            if done % config.log_every == 0 or final or done == start_step + 1:
                # not print(): Ray Train patches it to also log the line, which shows it twice
                sys.stdout.write(_progress(config.checkpoint.name, record, config.steps) + "\n")
                sys.stdout.flush()
        if final or done % config.checkpoint.every == 0:
            with clock("save"):
                save(session, done, record)
                if log is not None:
                    log.flush()
    with clock("export"):
        export(session)
    if rank == 0:
        storage.write_json(
            storage.join(config.output_dir, RUN_RECORD),
            {"name": config.checkpoint.name, "steps": config.steps, "start_step": start_step,
             "seconds": clock.seconds(), "steps_trained": config.steps - start_step},
        )  # fmt: skip
    tear_down(session)
    gc.collect()


class Clock:
    """Wall seconds per named part of a run, summed: where the time outside the steps goes."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    @contextmanager
    def __call__(self, part: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.parts[part] = self.parts.get(part, 0.0) + time.perf_counter() - started

    def seconds(self) -> dict[str, float]:
        return {part: round(value, 3) for part, value in self.parts.items()}


def set_up(run: RunSpec, rank: int, world: int, device) -> Session:
    """Tokenizer, model (optionally with liger kernels, activation checkpointing, compiled layers),
    the packed-loss wrapper, AdamW with weight decay on matrices only, the WSA scheduler, DeepSpeed."""
    import deepspeed
    import torch

    from cprec.trainer.loss import PackedCausalLM, fused_loss_available
    from cprec.trainer.model import apply_liger_kernels, compile_layers, load_model, load_tokenizer
    from cprec.trainer.schedule import make_scheduler

    config, plan = run.config, run.plan
    bf16 = device.type == "cuda" and config.deepspeed.bf16
    tokenizer = load_tokenizer(config.data_dir)
    torch.manual_seed(config.seed)  # identical initial weights on every worker
    model = load_model(config, tokenizer, torch.bfloat16 if bf16 else torch.float32, device)
    if config.liger_kernels:
        apply_liger_kernels(model, device)
    if config.deepspeed.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.compile:
        compile_layers(model)
    fpt = flops_per_token(model, plan_block_len(plan))
    wrapper = PackedCausalLM(model, config.loss_chunk_tokens, fused=fused_loss_available(device))
    if config.deepspeed.zero_stage == 3:
        # the loss reads the head's weight outside the head's forward: have ZeRO-3 gather it for us
        deepspeed.zero.register_external_parameter(wrapper, wrapper.head.weight)
    decay = [p for p in wrapper.parameters() if p.ndim >= 2]
    no_decay = [p for p in wrapper.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.schedule.peak_lr,
        betas=tuple(config.adam_betas),
        fused=device.type == "cuda",
    )
    scheduler = make_scheduler(optimizer, config.steps, config.schedule)
    # DeepSpeed would JIT-compile a shared-memory all-reduce op on CPU; gloo's is enough.
    importlib.import_module("deepspeed.ops").__compatible_ops__["deepspeed_shm_comm"] = False
    engine, _, _, _ = deepspeed.initialize(
        model=wrapper,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(config, world, bf16),
        dist_init_required=False,
    )
    eval_batches = 0
    if plan.valid_units:
        per_rank = [-(-sum(u.rows for u in units) // config.micro_batch_size) for units in plan.valid_units]
        eval_batches = min([config.eval_batches, *per_rank])
    return Session(
        run, rank, world, device, tokenizer, model, engine, fpt, peak_flops(config, device), eval_batches
    )


def restore(session: Session) -> tuple[int, int]:
    """Loads the run's newest complete checkpoint into the engine; returns (step, tokens seen) there."""
    root = session.run.checkpoints
    progress = checkpoints.latest_progress(root)
    step = progress["step"]
    if step > 0:
        with tempfile.TemporaryDirectory(prefix="cprec-restore-") as directory:
            local = checkpoints.download(root, step, Path(directory))
            session.engine.load_checkpoint(str(local), tag=CHECKPOINT_TAG)
    return step, progress.get("tokens_seen", 0)


def open_batches(session: Session, start_step: int) -> Batches:
    run = session.run
    streams = {kind: train_stream(run.plan, kind, session.rank, start_step) for kind in run.plan.kinds}
    return Batches(run.plan, session.rank, start_step, streams, run.config.micro_batch_size)


def train_step(session: Session, batches: Batches, step: int, start_step: int, tokens_seen: int) -> dict:
    """One optimizer step over its micro-batches; returns the step's metrics record (summed over workers)."""
    import torch
    import torch.distributed as dist

    engine, device, plan = session.engine, session.device, session.run.plan
    started = time.perf_counter()
    lr = engine.get_lr()[0]
    # summed on the device: one host sync per step, not per micro-batch
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss*labels, labels, real tokens, all tokens
    kinds: dict[str, int] = {}
    for batch, counts in batches.step(step):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        loss, count = engine(**batch)
        engine.backward(loss)
        engine.step()
        sums[0] += loss.detach().double() * count
        sums[1] += count
        sums[2] += (batch["document_ids"] >= 0).sum()
        sums[3] += batch["input_ids"].numel()
        for kind, n in counts.items():
            kinds[kind] = kinds.get(kind, 0) + n
    grad_norm = engine.get_global_grad_norm()
    dist.all_reduce(sums)
    loss_sum, label_count, tokens, padded = sums.tolist()
    seconds = time.perf_counter() - started
    record = {
        "step": step + 1,
        "phase": plan.phase(step),
        "loss": loss_sum / max(label_count, 1),
        "lr": lr,
        "grad_norm": float(grad_norm) if grad_norm is not None else None,
        "tokens_per_s": tokens / seconds,
        # real (non-padding) tokens trained on so far: what "equal tokens" comparisons need
        "tokens_seen": tokens_seen + int(tokens),
        "step_s": seconds,
        "start_step": start_step,  # > 0 after a resume: the checkpoint this attempt restored
    }
    if device.type == "cuda":
        record["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if session.peak_flops:
        record["mfu"] = session.flops_per_token * padded / seconds / (session.peak_flops * session.world)
    record.update({f"blocks_{kind}": n for kind, n in sorted(kinds.items())})
    return record


def validate(session: Session) -> float | None:
    """Mean validation loss per label over at most `eval_batches` micro-batches per worker."""
    import torch
    import torch.distributed as dist

    if not session.eval_batches:
        return None
    engine, device, run = session.engine, session.device, session.run
    engine.eval()
    total = count = 0.0
    stream = valid_stream(run.plan, session.rank).iter_torch_batches(batch_size=run.config.micro_batch_size)
    with torch.no_grad():
        for index, batch in enumerate(stream):
            if index == session.eval_batches:
                break
            loss, tokens = engine(**{k: batch[k].to(device) for k in ("input_ids", "position_ids", "document_ids")})
            total += float(loss) * int(tokens)
            count += int(tokens)
    engine.train()
    sums = torch.tensor([total, count], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    return sums[0].item() / max(sums[1].item(), 1)


def save(session: Session, step: int, record: dict) -> None:
    """A DeepSpeed checkpoint in the run's own storage: every worker uploads its files, rank 0 commits
    once all have; then the step's metrics go to Ray Train (and through it to Tune)."""
    import ray.train
    import torch.distributed as dist

    run = session.run
    target = checkpoints.step_dir(run.checkpoints, step)
    with tempfile.TemporaryDirectory(prefix="cprec-ckpt-") as directory:
        session.engine.save_checkpoint(directory, tag=CHECKPOINT_TAG, client_state={"step": step})
        checkpoints.upload(directory, target)
    dist.barrier()
    if session.rank == 0:
        progress = {"step": step, "tokens_seen": record["tokens_seen"]}
        checkpoints.commit(run.checkpoints, step, progress, run.config.checkpoint.num_to_keep)
    dist.barrier()
    ray.train.report({k: v for k, v in record.items() if isinstance(v, (int, float, str))})


def export(session: Session) -> None:
    """The Hugging Face export at <output_dir>/model, written by rank 0 (ZeRO-3 gathers the weights
    from every rank first)."""
    import torch.distributed as dist

    from cprec.trainer.model import export_model

    config = session.run.config
    state = None
    if config.deepspeed.zero_stage == 3:
        state = session.engine._zero3_consolidated_16bit_state_dict()  # collective: every rank calls it
    if session.rank == 0:
        model_dir = storage.join(config.output_dir, MODEL_DIR)
        with storage.atomic_output(model_dir, "train fit") as staging:
            if storage.is_local(staging):
                export_model(session.model, session.tokenizer, staging, state)
            else:
                with tempfile.TemporaryDirectory(prefix="cprec-export-") as directory:
                    export_model(session.model, session.tokenizer, directory, state)
                    checkpoints.upload(directory, staging)
    dist.barrier()


def tear_down(session: Session) -> None:
    """Frees the engine's memory before the group's next run."""
    session.engine.destroy()
    session.engine = session.model = None
    if session.device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def plan_block_len(plan: DataPlan) -> int:
    import pyarrow.parquet as pq

    unit = next(iter(plan.train_units.values()))[0][0]
    fs, path = storage.filesystem(unit.file)
    with fs.open_input_file(path) as handle:
        row = pq.ParquetFile(handle).read_row_group(unit.row_group, columns=["input_ids"]).slice(0, 1)
    return len(row.column(0)[0])


def _progress(name: str, record: dict, total: int) -> str:
    parts = [
        name,
        f"step {record['step']}/{total}",
        f"[{record['phase']}]",
        f"loss {record['loss']:.4f}",
        f"lr {record['lr']:.2e}",
    ]
    if record.get("grad_norm") is not None:
        parts.append(f"gnorm {record['grad_norm']:.2f}")
    parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if "mfu" in record:
        parts.append(f"MFU {record['mfu']:.1%}")
    if record.get("val_loss") is not None:
        parts.append(f"val_loss {record['val_loss']:.4f}")
    return "cprec train: " + "  ".join(parts)


