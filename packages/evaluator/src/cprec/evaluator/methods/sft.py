"""The LLM after supervised fine-tuning on a dataset's training sequences, then scored like zero-shot.

Fine-tuning is the trainer package's own code path (Ray Train + DeepSpeed, `cprec.trainer.fit`),
not a second training loop: each user's training history becomes template documents (the same
`document('domain', ...)` as pre-training, windows of `sft.max_items`, EOS at the end), packed into
token shards by data_prep's `pack_documents` / `write_token_dir`, and the given model continues
training on them. The trainer's validation split holds, for a seeded share of users, their history
plus the validation item (never a test item). Outputs go to `<out_dir>/sft/<method>/<dataset>/`;
a finished run of the same name there is reused by the trainer instead of retrained.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from cprec.core import storage
from cprec.core.config import layered, load_config
from cprec.core.errors import CPRecError
from cprec.core.template import document, windows
from cprec.evaluator.config import EvalConfig, method_dir
from cprec.evaluator.datasets import SplitDataset
from cprec.evaluator.methods.llm import LLMZeroShot, load_tokenizer

if TYPE_CHECKING:
    from cprec.trainer.config import TrainConfig

log = logging.getLogger("cprec.evaluator.sft")

MIN_ITEMS = 2  # a one-item history teaches nothing about sequences (data_prep's min_items)
ONLY_DOMAIN = {"domain": 1.0, "mixed": 0.0, "catalog": 0.0}


def sft_documents(
    dataset: SplitDataset, max_items: int, valid_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Template documents of the training histories ('train') and of history + validation item ('valid')."""
    rng = np.random.default_rng(seed)
    held = rng.random(dataset.n_users) < valid_fraction
    held[rng.integers(dataset.n_users)] = True  # the trainer needs at least one validation document
    out: dict[str, list[str]] = {"train": [], "valid": []}
    for user in range(dataset.n_users):
        histories = [("train", dataset.train[user])]
        if held[user]:
            histories.append(("valid", dataset.history("test", user)))
        for split, items in histories:
            for start, end in windows(len(items), max_items):
                if end - start >= MIN_ITEMS:
                    texts = [dataset.item_texts[i] for i in items[start:end]]
                    out[split].append(document("domain", dataset.domain, texts))
    if not out["train"]:
        raise CPRecError(
            f"dataset {dataset.name!r} has no training history of {MIN_ITEMS}+ items to fine-tune on"
        )
    return out


def fine_tune(dataset: SplitDataset, model_path: str, label: str, config: EvalConfig) -> str:
    """Packs the SFT shards, runs the trainer from `model_path`; returns the fine-tuned model dir."""
    try:
        from cprec.data_prep.tokens import pack_documents, write_token_dir
        from cprec.trainer.config import TrainConfig
        from cprec.trainer.fit import fit
    except ModuleNotFoundError as exc:
        raise CPRecError(f"sft needs cprec-data-prep and cprec-trainer installed ({exc})") from exc

    tokenizer = load_tokenizer(model_path)
    root = storage.join(config.out_dir, "sft", method_dir(label), dataset.name)
    documents = sft_documents(dataset, config.sft.max_items, config.sft.valid_fraction, config.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tables = {}
    for split, texts in documents.items():
        ids = [row + [tokenizer.eos_token_id] for row in tokenizer(texts)["input_ids"]]
        tables[(split, "domain")] = pack_documents(ids, config.sft.block_len, pad_id)
    data_dir = write_token_dir(storage.join(root, "data"), tables, tokenizer)
    base = {
        "data_dir": data_dir,
        "output_dir": storage.join(root, "train"),
        "model": model_path,
        "schedule": {"mixture": {"warmup": ONLY_DOMAIN, "stable": ONLY_DOMAIN, "annealing": ONLY_DOMAIN}},
        "checkpoint": {"name": f"sft-{dataset.name}"},
    }
    fixed = {key: base[key] for key in ("data_dir", "output_dir", "model")}  # not the user's to override
    merged = {**layered(base, config.sft.train), **fixed}
    train_config = load_config(TrainConfig, base=merged)
    if config.sft.epochs > 0:
        steps = epoch_steps(tables[("train", "domain")].num_rows, config.sft.epochs, train_config)
        log.info("sft %s on %s: %.2g epochs = %d steps", label, dataset.name, config.sft.epochs, steps)
        train_config = load_config(TrainConfig, base={**merged, "steps": steps})
    return fit(train_config).model_dir


def epoch_steps(blocks: int, epochs: float, train: TrainConfig) -> int:
    """Optimizer steps for `epochs` passes over `blocks` token blocks (at least one step)."""
    per_step = train.micro_batch_size * train.grad_accum * train.scaling.num_workers
    return max(1, math.ceil(epochs * blocks / per_step))


class LLMFineTuned(LLMZeroShot):
    """`spec.model` fine-tuned per dataset, then scored zero-shot style with every score form."""

    def fit(self, dataset: SplitDataset) -> None:
        self.close()
        self.tuned = fine_tune(dataset, self.spec.model, self.spec.label(), self.config)
        super().fit(dataset)

    def model_path(self, dataset: SplitDataset) -> str:
        return self.tuned

    def info(self) -> dict:
        return {**super().info(), "fine_tuned_model": self.tuned}
