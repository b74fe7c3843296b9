"""GPU benchmark: `cprec train`'s own code path vs. a plain PyTorch + transformers loop, same run.

A Qwen2.5-0.5B-shaped causal LM (random init: hidden 896, 24 layers, 14/2 heads, vocab 151936),
sequence 2048, bf16, on one GPU. Both sides train on the same packed blocks for the same steps:
  - cprec: `fit()` through Ray Train + DeepSpeed (ZeRO stage --zero), the packed-document loss and
    the memory-aware cross-entropy (liger-kernel's fused one when installed);
  - plain: AutoModelForCausalLM + fused torch AdamW, `model(..., labels=...)`, no Ray, no DeepSpeed.
Reports tokens/s (all tokens of the blocks), MFU (6N + attention FLOPs per token, against
--peak-tflops, default 989 for H100/H200 dense bf16) and peak memory; JSON to $OUT (or --out),
a short table printed last. On an offline machine first install the wheels of
../shared/device/pack-wheels.sh and put the packages on PYTHONPATH:

    PYTHONPATH=packages/core/src:packages/data_prep/src:packages/trainer/src:$PYTHONPATH \
        python benchmarks/gpu_train.py --steps 30
    python benchmarks/gpu_train.py --configs sdpa,flex@16,flex+liger+compile@16     # side by side
    python benchmarks/gpu_train.py --device cpu --shape tiny --seq 128 --steps 4 --configs document  # a smoke test

A configuration of `cprec train` is `+`-joined parts, optionally `@` a micro-batch size:
attention sdpa | flex (flex_attention) | document (document_sdpa) | auto, then liger (liger-kernel's
decoder kernels) and compile (torch.compile of each decoder layer); e.g. `flex+liger+compile@16`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

SHAPES = {
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        vocab_size=151936,
        tie_word_embeddings=True,
        rope_theta=1e6,
    ),
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=4096,
        tie_word_embeddings=True,
    ),
}


def write_inputs(work: Path, shape: str, seq: int, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """A data build of packed random documents (lengths like item histories) and a random-init model dir."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from cprec.data_prep.tokens import pack_documents, train_tokenizer, write_token_dir

    vocab = SHAPES[shape]["vocab_size"]
    rng = np.random.default_rng(seed)
    tokenizer = train_tokenizer([f"[Books] item {i} | brand: b{i % 7}" for i in range(200)], vocab_size=300)
    documents, total = [], 0
    while total < rows * seq:
        length = int(np.clip(rng.lognormal(np.log(300), 0.7), 16, seq))
        documents.append(rng.integers(2, vocab, size=length).tolist() + [tokenizer.eos_token_id])
        total += length + 1
    table = pack_documents(documents, seq, tokenizer.pad_token_id)
    data = work / "data"
    write_token_dir(str(data), {("train", "domain"): table}, tokenizer)
    config = Qwen2Config(
        **SHAPES[shape],
        max_position_embeddings=max(seq, 2048),
        use_cache=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    model.save_pretrained(str(work / "model"))  # no tokenizer: the data's is used, with a warning
    return data, work / "model"


def flops_per_token(config, seq: int) -> float:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    return 6 * params + 12 * config.num_hidden_layers * config.hidden_size * seq


ATTENTIONS = {"sdpa": "sdpa", "flex": "flex_attention", "document": "document_sdpa", "auto": "auto"}


def parse_config(spec: str, micro_batch: int) -> dict:
    """`flex+liger+compile@16` -> the TrainConfig settings it names."""
    parts, _, size = spec.partition("@")
    names = parts.split("+")
    unknown = [n for n in names[1:] if n not in ("liger", "compile")]
    if names[0] not in ATTENTIONS or unknown:
        raise SystemExit(
            f"gpu_train: cannot read configuration {spec!r} (attention one of {sorted(ATTENTIONS)}, "
            "then liger and/or compile, then @micro-batch)"
        )
    return {
        "attn": ATTENTIONS[names[0]],
        "liger_kernels": "liger" in names,
        "compile": "compile" in names,
        "micro_batch": int(size) if size else micro_batch,
    }


def run_cprec(data: Path, model: Path, work: Path, args, setting: dict) -> dict:
    from cprec.core.raytools import init_ray
    from cprec.trainer.config import TrainConfig
    from cprec.trainer.fit import fit

    cuda = args.device == "cuda"
    # GPUs said outright: a GPU Ray missed would leave fit() waiting. Where the packed minimal Ray
    # lacks the dashboard's packages, init_ray starts without it; fit() then joins this instance.
    init_ray(
        num_cpus=os.cpu_count() if cuda else 2,
        num_gpus=torch.cuda.device_count() if cuda else None,
        dashboard=not args.no_dashboard,
    )
    cfg = TrainConfig(
        data_dir=str(data),
        output_dir=str(work / "cprec"),
        model=str(model),
        steps=args.steps,
        micro_batch_size=setting["micro_batch"],
        grad_accum=1,
        attn_implementation=setting["attn"],
        peak_tflops=args.peak_tflops if cuda else 0.0,
        eval_every=0,
        log_every=max(1, args.steps // 5),
        liger_kernels=setting["liger_kernels"],
        compile=setting["compile"],
    )
    cfg.schedule.mixture.warmup = cfg.schedule.mixture.stable = cfg.schedule.mixture.annealing = {}
    cfg.schedule.warmup, cfg.schedule.stable, cfg.schedule.annealing = 0.1, 0.9, 0.0
    cfg.scaling.num_workers, cfg.scaling.use_gpu = 1, cuda
    cfg.scaling.cpus_per_worker = 4.0 if cuda else 0.5
    cfg.deepspeed.zero_stage = args.zero
    cfg.checkpoint.every = args.steps  # one checkpoint, at the end: the benchmark times steps, not saving
    fit(cfg)
    records = [json.loads(line) for line in (work / "cprec" / "metrics.jsonl").read_text().splitlines()]
    timed = records[args.warmup :]
    seconds = statistics.median(r["step_s"] for r in timed)
    tokens = setting["micro_batch"] * args.seq
    return {
        "micro_batch": setting["micro_batch"],
        "tokens_per_s": tokens / seconds,
        "step_s": seconds,
        "mfu": statistics.median(r["mfu"] for r in timed) if "mfu" in timed[0] else None,
        "peak_memory_gib": max(r.get("max_memory_gib", 0.0) for r in records),
        "final_loss": records[-1]["loss"],
    }


def run_plain(data: Path, model_dir: Path, args) -> dict:
    import pyarrow.parquet as pq
    from transformers import AutoModelForCausalLM

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, attn_implementation=args.attn).to(device)
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device == "cuda")
    table = pq.read_table(next((data / "tokens" / "train" / "domain").glob("*.parquet")))
    rows = {
        name: torch.tensor(np.stack(table.column(name).to_numpy(zero_copy_only=False)))
        for name in ("input_ids", "position_ids", "document_ids")
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def train_step(step: int) -> torch.Tensor:
        pick = [(step * args.micro_batch + i) % rows["input_ids"].shape[0] for i in range(args.micro_batch)]
        ids = rows["input_ids"][pick].long().to(device)
        positions = rows["position_ids"][pick].long().to(device)
        labels = ids.masked_fill(rows["document_ids"][pick].to(device) < 0, -100)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        loss = model(input_ids=ids, position_ids=positions, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    times, loss = [], None
    for step in range(args.steps):
        started = time.perf_counter()
        loss = train_step(step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    peak_memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    if args.profile:
        profile_steps(train_step, args)
    seconds = statistics.median(times[args.warmup :])
    tokens = args.micro_batch * args.seq
    fpt = flops_per_token(model.config, args.seq)
    return {
        "micro_batch": args.micro_batch,
        "tokens_per_s": tokens / seconds,
        "step_s": seconds,
        "mfu": fpt * tokens / seconds / (args.peak_tflops * 1e12) if device.type == "cuda" else None,
        "peak_memory_gib": peak_memory,
        "final_loss": float(loss.detach()),
    }


def profile_steps(train_step, args) -> None:
    """Two more (untimed) steps of the plain loop under torch.profiler: the kernels that take the
    time, to plain_profile.txt. Best effort: a profiler failure never costs the benchmark."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    try:
        with profile(activities=activities) as prof:
            for step in range(args.steps, args.steps + 2):
                train_step(step)
            if args.device == "cuda":
                torch.cuda.synchronize()
        events = prof.key_averages()
        key = "self_device_time_total" if args.device == "cuda" else "self_cpu_time_total"
        text = events.table(sort_by=key, row_limit=30, max_name_column_width=90)
    except Exception as error:  # noqa: BLE001
        text = f"profiling failed: {error!r}"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "plain_profile.txt").write_text(text)
    print("gpu_train: plain loop profile (2 steps) written to plain_profile.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the medians")
    parser.add_argument("--zero", type=int, default=2)
    parser.add_argument(
        "--attn", default="sdpa", help="the plain loop's attention: sdpa, or flash_attention_2 where installed"
    )
    parser.add_argument(
        "--configs",
        default="sdpa,flex,flex+liger+compile",
        help="comma-separated `cprec train` configurations, each run in turn (see above)",
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--only", choices=["cprec", "plain"], default=None)
    parser.add_argument(
        "--profile", action="store_true", help="profile two extra plain-loop steps to plain_profile.txt"
    )
    parser.add_argument(
        "--no-dashboard", action="store_true", help="start Ray without its dashboard even where installable"
    )
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    args.warmup = min(args.warmup, args.steps - 1)
    settings = {spec: parse_config(spec, args.micro_batch) for spec in args.configs.split(",") if spec}
    largest = max([args.micro_batch] + [setting["micro_batch"] for setting in settings.values()])
    work = Path(tempfile.mkdtemp(prefix="cprec-gpu-bench-"))
    data, model = write_inputs(work, args.shape, args.seq, rows=args.steps * largest + 8)
    results = {}
    if args.only in (None, "plain"):
        results[f"plain PyTorch + transformers ({args.attn})"] = run_plain(data, model, args)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    if args.only in (None, "cprec"):
        for spec, setting in settings.items():
            name = f"cprec train {spec} (ZeRO-{args.zero})"
            try:
                results[name] = run_cprec(data, model, work / spec.replace("@", "-mb"), args, setting)
            except Exception as error:  # noqa: BLE001 - one configuration's failure (OOM, a missing kernel) is a result
                results[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
                print(f"gpu_train: {name} failed: {results[name]['error']}", flush=True)
            if args.device == "cuda":
                torch.cuda.empty_cache()
    report = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "versions": versions(),
        "shape": args.shape,
        "seq": args.seq,
        "steps": args.steps,
        "peak_tflops": args.peak_tflops,
        "results": results,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_train.json").write_text(json.dumps(report, indent=2))
    print(f"\n{report['device']}, {args.shape}, seq {args.seq}, {report['versions']}")
    print("| path | micro-batch | tokens/s | MFU | peak GiB |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | - | failed: {r['error'][:60]} | - | - |")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        memory = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] else "-"
        print(f"| {name} | {r['micro_batch']} | {r['tokens_per_s']:,.0f} | {mfu} | {memory} |")


def versions() -> str:
    import importlib.metadata as metadata

    found = []
    for package in ("torch", "transformers", "deepspeed", "ray", "liger-kernel"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


if __name__ == "__main__":
    main()
