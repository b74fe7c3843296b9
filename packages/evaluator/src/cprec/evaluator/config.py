"""Configuration of `cprec eval` (docs/design.md §7): datasets, methods, protocol, metrics, report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cprec.core.config import option
from cprec.core.errors import CPRecError
from cprec.core.sources import SourceConfig
from cprec.evaluator.methods.registry import METHODS

METHOD_KINDS = tuple(METHODS)
FORMS = ("sum", "mean", "pmi")


@dataclass
class DatasetConfig:
    name: str = option("", help="dataset name, used in paths and the report")
    platform: str = option("", help="platform label for the report (marketplace, retail, ...)")
    source: SourceConfig = option(SourceConfig(), help="raw source, cleaned by data_prep's build")
    data_dir: str = option("", help="or: an existing data_prep output dir (items.parquet + interactions/)")
    split_dir: str = option(
        "", help="or: a split written by data_prep's downstream.prepare_split, read as is (not prepared again)"
    )


@dataclass
class MethodConfig:
    kind: str = option("popularity", help=" | ".join(METHODS))
    name: str = option("", help="label in the report (default: kind, plus the model dir name for llm)")
    model: str = option(
        "", help="llm: Hugging Face causal LM path (base model or `cprec train` export) for datasets not in `models`"
    )
    form: str = option("auto", help="llm score form: sum | mean | pmi | auto (chosen on valid NDCG@10)")
    datasets: list[str] = option([], help="evaluate this method only on these datasets (empty = all)")
    models: dict[str, str] = option(
        {}, help="llm: a model per dataset name (e.g. each dataset's fine-tuned model); `model` for the rest"
    )
    base: str = option(
        "", help="the pre-trained model this method stands for (Base, CPRec, a variant); '' for the baselines"
    )
    fine_tuned: bool = option(
        False, help="llm: the models were fine-tuned on each dataset (by the pipeline) before scoring; recorded"
    )

    def label(self) -> str:
        if self.name:
            return self.name
        if self.kind == "llm" and self.model:
            return f"llm:{self.model.rstrip('/').rsplit('/', 1)[-1]}"
        return self.kind

    def model_for(self, dataset: str) -> str:
        """The model scored on `dataset`: its own in `models`, else `model` ('' for the baselines)."""
        return self.models.get(dataset) or self.model


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
    popularity_prior: list[float] = option(
        [],
        help="weights w: each score form is also scored as `<form>+pop<w>`, plus w x log(1 + the item's count "
        "in the training split), a prior no title shows; picked on validation with the forms (docs/design.md §4)",
    )
    actor_restarts: int = option(
        2,
        help="times the scoring actors are started afresh (catalogue re-sent, the call redone) when one "
        "dies: a lost node or a crashed worker costs a call, not the evaluation",
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
    llm: LLMConfig = option(LLMConfig(), help="LLM scoring options (llm methods)")

    def validate(self) -> None:
        if not self.datasets and not self.world:
            raise CPRecError("eval config: give `world` (a world.json) or a `datasets` list")
        names = [d.name for d in self.datasets]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise CPRecError(f"eval config: every dataset needs a unique name, got {names}")
        for d in self.datasets:
            if sum(map(bool, (d.source.path, d.data_dir, d.split_dir))) != 1:
                raise CPRecError(
                    f"eval config: dataset {d.name!r} needs exactly one of source.path, data_dir or split_dir"
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
            if m.kind == "llm" and not m.model and not m.models:
                raise CPRecError(f"eval config: method {m.label()!r} (llm) needs `model` or `models`")
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
        if any(w <= 0 for w in self.llm.popularity_prior):
            raise CPRecError(f"eval config: llm.popularity_prior weights must be > 0, got {self.llm.popularity_prior}")
        if self.llm.end not in ("item_end", "eos", "none"):
            raise CPRecError(f"eval config: llm.end {self.llm.end!r} is not item_end, eos or none")
        if self.sasrec.loss not in ("bce", "ce"):
            raise CPRecError(f"eval config: sasrec.loss {self.sasrec.loss!r} is not bce or ce")
        if self.baseline_cpus < 0:
            raise CPRecError(f"eval config: baseline_cpus must be >= 0, got {self.baseline_cpus}")
        from cprec.evaluator.metrics import parse_metric

        kind, k = parse_metric(self.select_metric)
        if kind != "mrr" and k not in self.ks:
            raise CPRecError(f"eval config: select_metric {self.select_metric} needs {k} in ks {self.ks}")
        if self.datasets:  # a world's dataset names are known once it is read (prepare_datasets)
            self.check_method_models([d.name for d in self.datasets])

    def check_method_models(self, names: list[str]) -> None:
        """Every llm method has a model for each of `names` it is evaluated on."""
        for m in self.methods:
            if m.kind != "llm":
                continue
            missing = [n for n in names if (not m.datasets or n in m.datasets) and not m.model_for(n)]
            if missing:
                raise CPRecError(
                    f"eval config: method {m.label()!r} has no `model` and no `models` entry for datasets {missing}"
                )

    def protocol_label(self) -> str:
        if self.protocol == "sampled":
            return f"sampled: 1 positive + {self.negatives} random negatives per user (not full ranking)"
        return "full ranking over the whole catalogue"
