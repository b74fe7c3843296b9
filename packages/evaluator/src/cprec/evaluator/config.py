"""Configuration of `cprec eval` (docs/design.md §7): datasets, methods, protocol, metrics, report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cprec.core.config import option
from cprec.core.errors import CPRecError

METHOD_KINDS = ("popularity", "content", "sasrec", "llm", "sft")
FORMS = ("sum", "mean", "pmi")


def method_dir(label: str) -> str:
    """A method's label as one path component (an sft method writes under sft/<it>/<dataset>)."""
    from cprec.core.storage import safe_name

    return safe_name(re.sub(r"[^A-Za-z0-9_.-]+", "_", label), f"eval config: method {label!r} as a directory name")


@dataclass
class SourceSpec:
    """The fields of data_prep's SourceConfig, kept here so this module imports nothing heavy."""

    format: str = option("", help="amazon2023 | amazon2018 | recbole | online_retail")
    path: str = option("", help="file or directory, local or s3:// / gs://")
    domains: list[str] = option([], help="restrict to these domains (empty = all found)")
    domain: str = option("", help="online_retail: the domain name to give (default Online_Retail)")


@dataclass
class DatasetConfig:
    name: str = option("", help="dataset name, used in paths and the report")
    platform: str = option("", help="platform label for the report (marketplace, retail, ...)")
    source: SourceSpec = option(SourceSpec(), help="raw source, cleaned by data_prep's build")
    data_dir: str = option("", help="or: an existing data_prep output dir (items.parquet + interactions/)")


@dataclass
class MethodConfig:
    kind: str = option("popularity", help="popularity | content | sasrec | llm | sft")
    name: str = option("", help="label in the report (default: kind, plus the model dir name for llm/sft)")
    model: str = option("", help="llm/sft: Hugging Face causal LM path (base model or `cprec train` export)")
    form: str = option("auto", help="llm/sft score form: sum | mean | pmi | auto (chosen on valid NDCG@10)")
    datasets: list[str] = option([], help="evaluate this method only on these datasets (empty = all)")
    models: dict[str, str] = option(
        {}, help="llm: a model per dataset name (e.g. each dataset's fine-tuned model); `model` for the rest"
    )
    base: str = option(
        "", help="the pre-trained model this method stands for (Base, CPRec, a variant); '' for the baselines"
    )
    fine_tuned: bool = option(False, help="llm: the models were fine-tuned on each dataset (SFT) before scoring")

    def label(self) -> str:
        if self.name:
            return self.name
        if self.kind in ("llm", "sft"):
            return f"{self.kind}:{self.model.rstrip('/').rsplit('/', 1)[-1]}"
        return self.kind


@dataclass
class SASRecConfig:
    hidden: int = option(64, help="embedding and hidden size")
    blocks: int = option(2, help="self-attention blocks")
    heads: int = option(1, help="attention heads")
    dropout: float = option(0.2, help="dropout rate")
    max_len: int = option(50, help="longest input sequence (most recent items)")
    loss: str = option(
        "bce", help="bce (one sampled negative per position, as in the paper) | ce (full softmax)"
    )
    lr: float = option(1e-3, help="Adam learning rate")
    weight_decay: float = option(0.0, help="Adam weight decay")
    batch_size: int = option(128, help="users per training batch")
    epochs: int = option(200, help="maximum training epochs")
    eval_every: int = option(2, help="epochs between validation NDCG@10 checks")
    patience: int = option(5, help="validation checks without improvement before stopping")
    device: str = option(
        "auto", help="auto (a GPU if the process sees one; a Ray task sees none) | cpu | cuda (the task reserves one)"
    )


@dataclass
class LLMConfig:
    batch_size: int = option(256, help="candidate continuations per forward pass")
    max_history: int = option(50, help="most recent history items in a prompt (pre-training's max_items)")
    end: str = option(
        "item_end",
        help="how a candidate ends: item_end (log p of the item separator or EOS next), eos, or none",
    )
    num_actors: int = option(2, help="Ray actors holding the model (0 = score in this process)")
    cpus_per_actor: float = option(1.0, help="CPUs reserved per actor (fractions allowed)")
    device: str = option("auto", help="auto (GPU per actor when the cluster has GPUs) | cpu | cuda")
    dtype: str = option("auto", help="auto (bfloat16 on GPU, float32 on CPU) | float32 | bfloat16 | float16")
    users_per_task: int = option(16, help="users per actor call")
    actor_restarts: int = option(
        2,
        help="times the scoring actors are started afresh (catalogue re-sent, the call redone) when one "
        "dies: a lost node or a crashed worker costs a call, not the evaluation",
    )


@dataclass
class SFTConfig:
    block_len: int = option(256, help="token block length of the SFT shards")
    max_items: int = option(50, help="history window per training document (template windows)")
    valid_fraction: float = option(
        0.05, help="users whose (history + validation item) form the trainer's valid split"
    )
    train: dict[str, Any] = option(
        {}, help="TrainConfig options (steps, batch, schedule, deepspeed, scaling...) for the fine-tuning run"
    )
    epochs: float = option(
        0.0,
        help="passes over a dataset's training blocks; > 0 sets the run's steps to ceil(epochs x blocks / "
        "blocks per step), so a larger dataset is fine-tuned for more steps; 0 keeps train.steps",
    )


@dataclass
class EvalConfig:
    out_dir: str = option("runs/eval", help="output directory (datasets/, results.json, report.md, charts)")
    world: str = option(
        "", help="world.json whose `downstream` entries are the datasets (used when datasets is empty)"
    )
    datasets: list[DatasetConfig] = option([], help="explicit downstream datasets")
    build: dict[str, Any] = option(
        {},
        help="BuildConfig options (cleaning, k-core...) for datasets built from a source; out_dir, sources "
        "and stop_after=interactions are set by the evaluator",
    )
    rebuild: bool = option(False, help="rebuild datasets even when a matching split is on disk")
    max_users: int = option(
        0, help="evaluate a seeded random subset of this many users per dataset (0 = all)"
    )
    methods: list[MethodConfig] = option(
        [MethodConfig(kind="popularity"), MethodConfig(kind="content"), MethodConfig(kind="sasrec")],
        help="methods to evaluate",
    )
    ks: list[int] = option([5, 10, 20], help="cut-offs of HR@K and NDCG@K")
    protocol: str = option(
        "full", help="full (rank the whole catalogue) | sampled (1 positive + `negatives`)"
    )
    negatives: int = option(
        99, help="sampled protocol: negatives per user, drawn from items the user never had"
    )
    mask_history: bool = option(
        True, help="mask the user's earlier items out of the ranking (RecBole's convention)"
    )
    ties: str = option("expected", help="expected (rank under uniform random tie-breaking) | pessimistic")
    select_metric: str = option("ndcg@10", help="validation metric that picks a method's variant (llm form)")
    test: str = option("wilcoxon", help="paired test between methods: wilcoxon | ttest")
    alpha: float = option(0.05, help="significance level of the marks in the report")
    bootstrap: int = option(1000, help="bootstrap resamples of users for the confidence intervals")
    seed: int = option(0, help="seed of sampling, SASRec and the bootstrap")
    user_chunk: int = option(2048, help="users scored per call (bounds the users x items score matrix)")
    baseline_cpus: float = option(
        1.0,
        help="CPUs of the Ray task that fits and scores each baseline (popularity, content, sasrec) per "
        "dataset, on any worker of the cluster; fractions allowed; 0 = in this process",
    )
    sasrec: SASRecConfig = option(SASRecConfig(), help="SASRec options")
    llm: LLMConfig = option(LLMConfig(), help="LLM scoring options (llm and sft methods)")
    sft: SFTConfig = option(SFTConfig(), help="fine-tuning options (sft methods)")

    def validate(self) -> None:
        if not self.datasets and not self.world:
            raise CPRecError("eval config: give `world` (a world.json) or a `datasets` list")
        names = [d.name for d in self.datasets]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise CPRecError(f"eval config: every dataset needs a unique name, got {names}")
        for d in self.datasets:
            if bool(d.data_dir) == bool(d.source.path):
                raise CPRecError(
                    f"eval config: dataset {d.name!r} needs exactly one of source.path or data_dir"
                )
        if not self.methods:
            raise CPRecError("eval config: `methods` is empty")
        labels = [m.label() for m in self.methods]
        if len(set(labels)) != len(labels):
            raise CPRecError(f"eval config: method labels must be unique, got {labels} (set `name`)")
        for m in self.methods:
            if m.kind not in METHOD_KINDS:
                raise CPRecError(
                    f"eval config: method kind {m.kind!r} is not one of {', '.join(METHOD_KINDS)}"
                )
            if m.kind in ("llm", "sft") and not m.model:
                raise CPRecError(f"eval config: method {m.label()!r} ({m.kind}) needs `model`")
            if m.kind == "sft":
                method_dir(m.label())
            if m.form not in (*FORMS, "auto"):
                raise CPRecError(
                    f"eval config: method {m.label()!r} form {m.form!r} is not sum, mean, pmi or auto"
                )
        if not self.ks or min(self.ks) < 1:
            raise CPRecError(f"eval config: ks must be positive cut-offs, got {self.ks}")
        if self.protocol not in ("full", "sampled"):
            raise CPRecError(f"eval config: protocol {self.protocol!r} is not full or sampled")
        if self.protocol == "sampled" and self.negatives < 1:
            raise CPRecError("eval config: the sampled protocol needs negatives >= 1")
        if self.ties not in ("expected", "pessimistic"):
            raise CPRecError(f"eval config: ties {self.ties!r} is not expected or pessimistic")
        if self.test not in ("wilcoxon", "ttest"):
            raise CPRecError(f"eval config: test {self.test!r} is not wilcoxon or ttest")
        if self.llm.end not in ("item_end", "eos", "none"):
            raise CPRecError(f"eval config: llm.end {self.llm.end!r} is not item_end, eos or none")
        if self.sasrec.loss not in ("bce", "ce"):
            raise CPRecError(f"eval config: sasrec.loss {self.sasrec.loss!r} is not bce or ce")
        if self.baseline_cpus < 0:
            raise CPRecError(f"eval config: baseline_cpus must be >= 0, got {self.baseline_cpus}")
        if self.sft.epochs < 0:
            raise CPRecError(f"eval config: sft.epochs must be >= 0, got {self.sft.epochs}")
        from cprec.evaluator.metrics import parse_metric

        kind, k = parse_metric(self.select_metric)
        if kind != "mrr" and k not in self.ks:
            raise CPRecError(f"eval config: select_metric {self.select_metric} needs {k} in ks {self.ks}")

    def protocol_label(self) -> str:
        if self.protocol == "sampled":
            return f"sampled: 1 positive + {self.negatives} random negatives per user (not full ranking)"
        return "full ranking over the whole catalogue"
