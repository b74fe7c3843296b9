"""The per-worker training function run by Ray Train: a DeepSpeed engine over the packed stream.

Each worker restores the latest checkpoint Ray Train hands it (after a worker failure or a job
restart), continues at the step it stores with the LR scheduler's state, and reads the data from
exactly the rows that come next (see data.py). Rank 0 writes the metrics and the final HF export.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.trainer.config import TrainConfig
from cprec.trainer.data import Batches, DataPlan, train_name, valid_name

CHECKPOINT_TAG = "ds"
PROGRESS_FILE = "progress.json"
EXPORT_DIR = "hf"
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


def _write_json(uri: str, payload: dict) -> None:
    fs, path = storage.filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(json.dumps(payload).encode())


def train_loop(loop_config: dict) -> None:
    import deepspeed
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from cprec.trainer.loss import PackedCausalLM, fused_loss_available
    from cprec.trainer.model import apply_liger_kernels, compile_layers, load_model, load_tokenizer
    from cprec.trainer.schedule import make_scheduler

    config: TrainConfig = loop_config["config"]
    plan: DataPlan = loop_config["plan"]
    hint_uri: str = loop_config["hint_uri"]
    _quiet()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    _distributed_env(ctx)

    checkpoint = ray.train.get_checkpoint()
    start_step, tokens_seen = 0, 0
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            progress = json.loads((Path(directory) / PROGRESS_FILE).read_text())
            start_step, tokens_seen = progress["step"], progress.get("tokens_seen", 0)
    if start_step >= config.steps:
        return  # a finished run restarted: nothing left to train, the final checkpoint holds the export

    device = ray.train.torch.get_device()
    bf16 = device.type == "cuda" and config.deepspeed.bf16
    tokenizer = load_tokenizer(config.data_dir)
    torch.manual_seed(config.seed)  # identical initial weights on every worker
    model = load_model(config, tokenizer, torch.bfloat16 if bf16 else torch.float32)
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
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            engine.load_checkpoint(directory, tag=CHECKPOINT_TAG)

    shards = {kind: ray.train.get_dataset_shard(train_name(kind, rank)) for kind in plan.kinds}
    batches = Batches(plan, rank, start_step, shards, config.micro_batch_size)
    eval_batches = (
        min(
            [config.eval_batches]
            + [-(-sum(u.rows for u in units) // config.micro_batch_size) for units in plan.valid_units]
        )
        if plan.valid_units
        else 0
    )
    log = MetricsLog(config.output_dir, start_step) if rank == 0 else None
    peak = peak_flops(config, device)
    last_checkpoint = start_step

    def all_sum(*values: float) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def validate() -> float | None:
        if not eval_batches:
            return None
        engine.eval()
        total = count = 0.0
        stream = ray.train.get_dataset_shard(valid_name(rank)).iter_torch_batches(
            batch_size=config.micro_batch_size
        )
        with torch.no_grad():
            for index, batch in enumerate(stream):
                if index == eval_batches:
                    break
                loss, tokens = engine(
                    **{k: batch[k].to(device) for k in ("input_ids", "position_ids", "document_ids")}
                )
                total += float(loss) * int(tokens)
                count += int(tokens)
        engine.train()
        total, count = all_sum(total, count)
        return total / max(count, 1)

    for step in range(start_step, config.steps):
        if config.fail_at_step and step == config.fail_at_step and rank == world - 1:
            marker = storage.join(config.output_dir, ".injected-failure")
            if not storage.exists(marker):
                _write_json(marker, {"step": step})
                raise RuntimeError(f"injected failure at step {step} (fail_at_step)")
        started = time.perf_counter()
        lr = engine.get_lr()[0]
        # summed on the device: one host sync per step, not per micro-batch
        sums = torch.zeros(
            4, dtype=torch.float64, device=device
        )  # loss*labels, labels, real tokens, all tokens
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
        done = step + 1
        tokens_seen += int(tokens)
        record = {
            "step": done,
            "phase": plan.phase(step),
            "loss": loss_sum / max(label_count, 1),
            "lr": lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "tokens_per_s": tokens / seconds,
            # real (non-padding) tokens trained on so far: what "equal tokens" comparisons need
            "tokens_seen": tokens_seen,
            "step_s": seconds,
            "start_step": start_step,  # > 0 after a resume: the checkpoint this attempt restored
        }
        if device.type == "cuda":
            record["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if peak:
            record["mfu"] = fpt * padded / seconds / (peak * world)
        record.update({f"blocks_{kind}": n for kind, n in sorted(kinds.items())})
        final = done == config.steps
        if final or (config.eval_every and done % config.eval_every == 0):
            record["val_loss"] = validate()
        if log is not None:
            log.add(record)
            if done % config.log_every == 0 or final or done == start_step + 1:
                # not print(): Ray Train patches it to also log the line, which shows it twice
                sys.stdout.write(_progress(record, config.steps) + "\n")
                sys.stdout.flush()
        if final or done % config.checkpoint.every == 0:
            _save(engine, model, tokenizer, done, final, rank, record, config)
            if log is not None:
                log.flush()
                _write_json(hint_uri, {"step": last_checkpoint})
            last_checkpoint = done


def plan_block_len(plan: DataPlan) -> int:
    import pyarrow.parquet as pq

    unit = next(iter(plan.train_units.values()))[0][0]
    fs, path = storage.filesystem(unit.file)
    with fs.open_input_file(path) as handle:
        row = pq.ParquetFile(handle).read_row_group(unit.row_group, columns=["input_ids"]).slice(0, 1)
    return len(row.column(0)[0])


def _progress(record: dict, total: int) -> str:
    parts = [
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


def _save(
    engine, model, tokenizer, step: int, final: bool, rank: int, record: dict, config: TrainConfig
) -> None:
    """A DeepSpeed checkpoint (each worker writes its shards; Ray merges them in storage) plus, at
    the end, the HF export. Ray registers it only once every worker uploaded: never a partial one."""
    import ray.train

    from cprec.trainer.model import export_model

    with tempfile.TemporaryDirectory(prefix="cprec-ckpt-") as directory:
        engine.save_checkpoint(directory, tag=CHECKPOINT_TAG, client_state={"step": step})
        if final:
            state = None
            if config.deepspeed.zero_stage == 3:
                state = engine._zero3_consolidated_16bit_state_dict()  # collective: every rank calls it
            if rank == 0:
                export_model(model, tokenizer, str(Path(directory) / EXPORT_DIR), state)
        if rank == 0:
            (Path(directory) / PROGRESS_FILE).write_text(
                json.dumps({"step": step, "tokens_seen": record["tokens_seen"]})
            )
        metrics = {k: v for k, v in record.items() if isinstance(v, (int, float, str))}
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
