"""Configs of `cprec train`: the model, the WSA schedule with its per-phase data mixture, DeepSpeed,
Ray scaling and checkpointing. Defaults run on a laptop; the same file scales out by its `scaling`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cprec.core.config import option
from cprec.core.errors import CPRecError

PHASES = ("warmup", "stable", "annealing")
SHAPES = ("cosine", "linear", "1-sqrt", "exponential")


@dataclass
class TinyModelConfig:
    arch: str = option("qwen2", help="architecture of the tiny model: qwen2 or llama")
    hidden_size: int = option(64, help="hidden width")
    num_layers: int = option(2, help="transformer blocks")
    num_heads: int = option(4, help="attention heads")
    num_kv_heads: int = option(2, help="key/value heads (grouped-query attention)")
    intermediate_size: int = option(128, help="MLP width")
    max_position_embeddings: int = option(
        2048, help="longest position the model knows; >= the data's block length"
    )
    tie_word_embeddings: bool = option(True, help="share input embeddings and the output head")


@dataclass
class MixtureConfig:
    """Shares of the token kinds (domain, mixed, catalog) drawn in each WSA phase.

    The defaults are CPRec's mixture, stated here only: domain .45 / mixed .45 / catalog .1 in
    warmup and stable, then mixed .9 / catalog .1 in annealing, the move from per-domain knowledge
    to all-domain behaviour with catalogue-text replay against forgetting. Configs and overrides
    merge into a phase's mapping, so set a kind to 0 to drop it. A phase set to {} in code (a merge
    cannot empty it) draws the kinds in proportion to their rows.
    """

    warmup: dict[str, float] = option(
        {"domain": 0.45, "mixed": 0.45, "catalog": 0.1}, help="kind shares during warmup"
    )
    stable: dict[str, float] = option(
        {"domain": 0.45, "mixed": 0.45, "catalog": 0.1}, help="kind shares during the stable phase"
    )
    annealing: dict[str, float] = option(
        {"domain": 0.0, "mixed": 0.9, "catalog": 0.1},
        help="kind shares during annealing, the move to all-domain behaviour",
    )

    def for_phase(self, phase: str) -> dict[str, float]:
        return getattr(self, phase)


@dataclass
class ScheduleConfig:
    peak_lr: float = option(1e-3, help="learning rate of the stable phase")
    min_lr_ratio: float = option(0.1, help="min_lr / peak_lr: where warmup starts and annealing ends")
    warmup: float = option(0.1, help="share of steps in warmup (linear rise)")
    stable: float = option(0.6, help="share of steps at peak_lr")
    annealing: float = option(0.3, help="share of steps in annealing; the three shares sum to 1")
    shape: str = option("cosine", help="annealing shape: cosine, linear, 1-sqrt or exponential")
    mixture: MixtureConfig = option(MixtureConfig(), help="per-phase data mixture")

    def validate(self) -> None:
        shares = {"warmup": self.warmup, "stable": self.stable, "annealing": self.annealing}
        bad = {k: v for k, v in shares.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise CPRecError(f"schedule proportions must be >= 0, got {bad}")
        if abs(sum(shares.values()) - 1.0) > 1e-6:
            raise CPRecError(
                f"schedule proportions warmup+stable+annealing must sum to 1, got "
                f"{self.warmup}+{self.stable}+{self.annealing}={sum(shares.values()):g}"
            )
        if self.shape not in SHAPES:
            raise CPRecError(f"schedule.shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise CPRecError(f"schedule.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.shape == "exponential" and self.min_lr_ratio <= 0:
            raise CPRecError(
                "schedule.shape=exponential needs schedule.min_lr_ratio > 0 (it decays towards it)"
            )
        if self.peak_lr <= 0:
            raise CPRecError(f"schedule.peak_lr must be > 0, got {self.peak_lr}")
        for phase in PHASES:
            shares_of_kind = self.mixture.for_phase(phase)
            if any(v < 0 for v in shares_of_kind.values()):
                raise CPRecError(f"schedule.mixture.{phase} has a negative share: {shares_of_kind}")
            if shares_of_kind and abs(sum(shares_of_kind.values()) - 1.0) > 1e-6:
                raise CPRecError(f"schedule.mixture.{phase} shares must sum to 1, got {shares_of_kind}")


@dataclass
class DeepSpeedOptions:
    zero_stage: int = option(2, help="ZeRO stage 0-3")
    config: str = option("", help="a DeepSpeed JSON/YAML file merged over the defaults (its keys win)")
    grad_clip: float = option(1.0, help="gradient clipping by global norm (0 = off)")
    activation_checkpointing: bool = option(False, help="recompute activations in backward to save memory")
    bf16: bool = option(True, help="bf16 weights and compute on GPU workers (CPU workers stay fp32)")


@dataclass
class ScalingOptions:
    num_workers: int = option(2, help="Ray Train workers (one DeepSpeed rank each)")
    use_gpu: bool = option(False, help="one GPU per worker, NCCL; otherwise CPU workers with gloo")
    cpus_per_worker: float = option(1.0, help="CPUs reserved per worker (fractions allowed)")
    # Added by the cluster work (tests/pipeline/test_two_nodes.py): one worker per node needs STRICT_SPREAD.
    placement_strategy: str = option(
        "PACK", help="Ray placement of the workers: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD (one per node)"
    )


@dataclass
class CheckpointOptions:
    every: int = option(20, help="save a DeepSpeed checkpoint every N optimizer steps (and at the end)")
    num_to_keep: int = option(2, help="checkpoints kept in storage")
    storage_path: str = option(
        "",
        help="checkpoints go to <storage_path>/<name> (local or s3://, gs://; shared by every node); "
        "'' = <output_dir>/checkpoints",
    )
    name: str = option("cprec-train", help="run name (progress lines; its checkpoint directory under storage_path)")
    max_failures: int = option(1, help="worker-group restarts from the last checkpoint before giving up")


@dataclass
class TrainConfig:
    data_dir: str = option("", help="output of `cprec data build` (tokens/, tokenizer/)")
    output_dir: str = option("", help="where the model, metrics and plots go")
    model: str = option("", help="HF causal LM (local path or hub id); '' = the tiny model of `tiny`")
    tiny: TinyModelConfig = option(TinyModelConfig(), help="shape of the tiny model")
    attn_implementation: str = option(
        "auto",
        help="attention over packed documents: document_sdpa (each document attended to on its own, no "
        "block-diagonal mask), or transformers' flex_attention (GPU: a BlockMask from position_ids), "
        "sdpa, eager, flash_attention_2 (GPU, packed via position_ids); auto = flex_attention on a GPU "
        "where the model supports it, else document_sdpa where the architecture allows (Llama, Qwen2/3), else sdpa",
    )
    liger_kernels: bool = option(
        False,
        help="GPU only: liger-kernel's Triton RMSNorm, SwiGLU and RoPE in the decoder layers (needs liger-kernel)",
    )
    compile: bool = option(False, help="torch.compile each decoder layer (regional compilation; not with ZeRO-3)")
    allow_tokenizer_mismatch: bool = option(
        False, help="train a given model with the data's tokenizer even when it differs from the model's own"
    )
    steps: int = option(60, help="optimizer steps (T of the WSA schedule)")
    micro_batch_size: int = option(4, help="token blocks per worker per forward pass")
    grad_accum: int = option(1, help="micro-batches per optimizer step")
    seed: int = option(0, help="seed of model init and of the data order")
    weight_decay: float = option(0.01, help="AdamW weight decay")
    adam_betas: list[float] = option([0.9, 0.95], help="AdamW betas")
    schedule: ScheduleConfig = option(ScheduleConfig(), help="Warmup-Stable-Annealing schedule and mixtures")
    deepspeed: DeepSpeedOptions = option(DeepSpeedOptions(), help="DeepSpeed engine")
    scaling: ScalingOptions = option(ScalingOptions(), help="Ray Train workers")
    checkpoint: CheckpointOptions = option(CheckpointOptions(), help="checkpoints and recovery")
    unit_rows: int = option(
        1024, help="rows per shuffling/sharding unit of the token shards (data_prep writes 1024-row groups)"
    )
    loss_chunk_tokens: int = option(4096, help="tokens per chunk of the memory-aware cross-entropy")
    eval_every: int = option(20, help="validation loss every M steps (and at the end); 0 = only at the end")
    eval_batches: int = option(8, help="at most this many validation micro-batches per worker")
    log_every: int = option(10, help="a progress line every N steps")
    peak_tflops: float = option(
        0.0, help="peak TFLOP/s per worker for the MFU estimate; 0 = by GPU name (H100/H200), else no MFU"
    )

    def validate(self) -> None:
        if not self.data_dir:
            raise CPRecError("train: data_dir is required (the output of `cprec data build`)")
        if not self.output_dir:
            raise CPRecError("train: output_dir is required")
        for name in (
            "steps",
            "micro_batch_size",
            "grad_accum",
            "unit_rows",
            "loss_chunk_tokens",
            "log_every",
        ):
            if getattr(self, name) <= 0:
                raise CPRecError(f"train: {name} must be > 0, got {getattr(self, name)}")
        if self.deepspeed.zero_stage not in (0, 1, 2, 3):
            raise CPRecError(f"train: deepspeed.zero_stage must be 0-3, got {self.deepspeed.zero_stage}")
        if self.scaling.num_workers < 1:
            raise CPRecError("train: scaling.num_workers must be >= 1")
        if self.checkpoint.every <= 0:
            raise CPRecError("train: checkpoint.every must be > 0")
        from cprec.core.storage import safe_name

        safe_name(self.checkpoint.name, "train: checkpoint.name")  # a directory of the run's storage
        if self.liger_kernels and not self.scaling.use_gpu:
            raise CPRecError(
                "train: liger_kernels=true needs GPU workers (scaling.use_gpu=true): "
                "liger-kernel's Triton kernels do not run on CPU"
            )
        if self.compile and self.deepspeed.zero_stage == 3:
            raise CPRecError(
                "train: compile=true is not supported with deepspeed.zero_stage=3 "
                "(ZeRO-3 gathers parameters in module hooks that compiled layers would bypass)"
            )
        if self.tiny.arch not in ("qwen2", "llama"):
            raise CPRecError(f"train: tiny.arch must be qwen2 or llama, got {self.tiny.arch!r}")
        self.schedule.validate()
