"""The LLM recommender: an item's score is the log-likelihood of its text as the history's continuation.

The prompt is the user's domain-specific history document and a candidate is `continuation(text)`,
both from cprec.core.template, so the model reads exactly what it read in pre-training. Score forms
(docs/design.md §4), all from one forward pass:
- sum:  log p(candidate tokens [+ end] | history prompt)
- mean: sum / number of scored tokens (removes the length penalty)
- pmi:  sum minus the same log-likelihood under the empty prompt (removes the item's own prior;
        the prior is computed once per catalogue)
- <form>+pop<w> (with `llm.popularity_prior`): a form plus w x log(1 + the item's training count),
        the popularity a model reading titles cannot see; w is picked on validation like the form
`end` adds how the candidate stops: `item_end` scores log p(separator or EOS) after its last token,
the two ways an item line ends in a pre-training document (EOS alone when the separator is not a
token of its own); without it a title that is a prefix of a longer one would be favoured.

Shared-prefix scoring: the prompt is encoded once, together with the tokens every candidate starts
with (the separator and the domain tag); batches of candidates, right-padded and sorted by length,
then attend to its keys and values without a copy per candidate (prefix_attention.py), or, for an
architecture outside that module's list, through a transformers DynamicCache broadcast to the batch.
Candidate tokens are tokenized once per catalogue. Users are spread over Ray actors that hold the
model; the actors load one model after another for the whole evaluation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from cprec.core import storage
from cprec.core.architectures import plain_attention
from cprec.core.errors import CPRecError
from cprec.core.template import ITEM_SEPARATOR, continuation, empty_prompt, history_prompt
from cprec.evaluator.config import FORMS, LLMConfig
from cprec.evaluator.datasets import SplitDataset
from cprec.evaluator.methods import Method, prefix_attention

log = logging.getLogger(__name__)


def load_tokenizer(model_path: str):
    """The model's tokenizer, checked against its config: a missing path or a mismatch is a CPRecError."""
    from cprec.core.tokenizer import load_tokenizer as load

    return load(model_path, what="model", model_vocab_check=True)


def tokenize_catalogue(tokenizer, item_texts: list[str]) -> list[list[int]]:
    """Each item's continuation tokens, once per catalogue, whole: the template already bounds an
    item's text, and a cut candidate would be scored as ending where it does not."""
    return tokenizer([continuation(t) for t in item_texts], add_special_tokens=False)["input_ids"]


def end_token_ids(tokenizer, catalogue: list[list[int]], end: str) -> list[int]:
    """Tokens whose probability after a candidate means 'the item ends here'."""
    if end == "none":
        return []
    ids = [tokenizer.eos_token_id]
    if end == "item_end":
        separator = tokenizer(ITEM_SEPARATOR, add_special_tokens=False)["input_ids"]
        if len(separator) == 1 and all(c and c[0] == separator[0] for c in catalogue):
            ids.append(separator[0])
    return ids


class PrefixScorer:
    """Holds one model; scores catalogue continuations of prompts, sharing each prompt's KV cache."""

    def __init__(self, model_path: str, options: LLMConfig, device: str = "cpu", actor_cpus: float = 0.0):
        import torch

        if actor_cpus and device == "cpu":
            from cprec.core.raytools import limit_torch_threads

            limit_torch_threads(actor_cpus)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # else a bar per model load in every actor's log
        self.options = options
        self.device = torch.device(device)
        self.load(model_path)

    def load(self, model_path: str) -> None:
        """Holds `model_path`'s model from now on (a set catalogue must be set again: tokens differ)."""
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_tokenizer(model_path)
        dtype = self.options.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        self.model = AutoModelForCausalLM.from_pretrained(
            storage.local_copy(model_path), dtype=getattr(torch, dtype)
        ).to(self.device)
        self.model.eval()
        self.shared_attention = plain_attention(self.model.config)
        if self.shared_attention:
            prefix_attention.use_shared_prefix_attention(self.model)
        self.pad_id = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        self.max_positions = (
            getattr(self.model.config.get_text_config(), "max_position_embeddings", None) or 1 << 30
        )
        self.catalogue = None

    def ready(self) -> bool:
        return True

    def set_catalogue(self, catalogue: list[list[int]], end_ids: list[int]) -> None:
        """Candidate token ids (from `tokenize_catalogue`) and the end tokens, for every later call."""
        if any(len(ids) == 0 for ids in catalogue):
            raise CPRecError("an item text tokenizes to nothing; every candidate needs at least one token")
        self.catalogue = catalogue
        self.end_ids = end_ids
        self.lengths = np.array([len(c) for c in catalogue])
        self.by_length = np.argsort(self.lengths, kind="stable")  # batches of similar length pad little
        # Every candidate starts with the same tokens (the separator and the item's domain tag): they
        # are scored once, with the prompt, and each candidate's pass starts after them.
        common = os.path.commonprefix([tuple(c) for c in catalogue])[: int(self.lengths.min()) - 1]
        self.common = list(common)
        self.tails = [c[len(common) :] for c in catalogue]

    def token_counts(self) -> np.ndarray:
        return self.lengths + (1 if self.end_ids else 0)

    def prompt_ids(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt)["input_ids"]
        room = self.max_positions - int(self.lengths.max()) - 1
        if len(ids) > room:
            raise CPRecError(
                f"a prompt of {len(ids)} tokens leaves no room for candidates in the model's "
                f"{self.max_positions} positions; lower llm.max_history"
            )
        return ids

    def score_prompts(self, prompts: list[str], candidates: list[np.ndarray] | None = None) -> np.ndarray:
        """Sum log-likelihood [prompts, items] of every (or each prompt's candidate) item; -inf if unscored."""
        out = np.full((len(prompts), len(self.catalogue)), -np.inf, dtype=np.float32)
        for row, prompt in enumerate(prompts):
            items = (
                self.by_length
                if candidates is None
                else np.asarray(candidates[row])[np.argsort(self.lengths[candidates[row]], kind="stable")]
            )
            out[row, items] = self.score_prompt(self.prompt_ids(prompt), items)
        return out

    def score_prompt(self, prompt_ids: list[int], items: np.ndarray) -> np.ndarray:
        import torch
        from transformers import DynamicCache

        with torch.inference_mode():
            shared = torch.tensor([prompt_ids + self.common], device=self.device)
            start = shared.shape[1]  # the position of every candidate's first own token
            if self.shared_attention:
                prefix = prefix_attention.SharedPrefix()
                encoded = self.model(
                    input_ids=shared, use_cache=False, shared_prefix=prefix, logits_to_keep=len(self.common) + 1
                )
                prefix.capture = False
                logits = encoded.logits[0]
            else:
                encoded = self.model(input_ids=shared, use_cache=True)
                prefix = [(layer.keys, layer.values) for layer in _cache_of(encoded).layers]
                logits = encoded.logits[0, len(prompt_ids) - 1 :]
            # logits[j] predicts common[j]; the last predicts each candidate's first own token.
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            common = logprobs[torch.arange(len(self.common)), torch.tensor(self.common, dtype=torch.long)].sum()
            first = logprobs[-1]
            scores = []
            for begin in range(0, len(items), self.options.batch_size):
                batch = items[begin : begin + self.options.batch_size]
                ids, mask = self._padded([self.tails[i] for i in batch])
                size, width = ids.shape
                positions = (start + torch.arange(width, device=self.device)).expand(size, -1)
                if self.shared_attention:
                    out = self.model(input_ids=ids, position_ids=positions, use_cache=False, shared_prefix=prefix)
                else:
                    cache = DynamicCache(
                        ddp_cache_data=[
                            (k.expand(size, -1, -1, -1), v.expand(size, -1, -1, -1)) for k, v in prefix
                        ],
                        config=self.model.config,
                    )
                    out = self.model(
                        input_ids=ids,
                        attention_mask=torch.cat([mask.new_ones(size, start), mask], dim=1),
                        position_ids=positions,
                        cache=cache,
                        use_cache=True,
                    )
                sums = self._sum_logprobs(first, out.logits.float(), ids, mask) + common
                scores.append(sums.cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def naive_score_prompt(self, prompt_ids: list[int], items: np.ndarray) -> np.ndarray:
        """The reference: one full forward pass of prompt + candidate per item (tests and benchmark)."""
        import torch

        scores = []
        with torch.inference_mode():
            for item in items:
                candidate = self.catalogue[item]
                ids = torch.tensor([prompt_ids + candidate], device=self.device)
                logprobs = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
                positions = torch.arange(len(prompt_ids) - 1, len(prompt_ids) + len(candidate) - 1)
                total = logprobs[positions, torch.tensor(candidate)].sum()
                if self.end_ids:
                    total = total + torch.logsumexp(logprobs[-1, self.end_ids], dim=0)
                scores.append(float(total))
        return np.asarray(scores, dtype=np.float32)

    def _padded(self, sequences: list[list[int]]):
        import torch

        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _sum_logprobs(self, first, logits, ids, mask):
        """Sum over each candidate's tokens of log p(token | prompt, earlier tokens), plus the end term."""
        import torch

        # logits[:, j] predicts token j+1; token 0 is predicted by the prompt's last position.
        norm = torch.logsumexp(logits, dim=-1)  # [batch, width]
        token_logits = logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
        total = first[ids[:, 0]] + ((token_logits - norm[:, :-1]) * mask[:, 1:]).sum(dim=1)
        if self.end_ids:
            last = mask.sum(dim=1) - 1
            rows = torch.arange(len(ids), device=ids.device)
            end_logits = logits[rows, last][:, self.end_ids]
            total = total + torch.logsumexp(end_logits, dim=-1) - norm[rows, last]
        return total


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


class ScoringPool:
    """PrefixScorers on Ray actors (GPUs when the cluster has them), or one in this process.

    The actors outlive a model: `load` hands them the next one (an evaluation scores many models on
    one dataset), so a model costs its loading, not an actor's start.

    Scoring is a pure function of (model, catalogue, prompts), so when an actor dies (a preempted
    node, a worker that crashed on start) the pool starts its actors afresh, hands them the model and
    the catalogue again and redoes the call, up to `llm.actor_restarts` times.
    """

    def __init__(self, model_path: str, options: LLMConfig):
        self.options = options
        self.actors: list = []
        self.restarts_left = options.actor_restarts
        self.local: PrefixScorer | None = None
        self.model_path = ""
        if options.num_actors:
            from cprec.core.raytools import init_ray

            init_ray()
        self.load(model_path)

    def load(self, model_path: str) -> None:
        """Scores with `model_path`'s model from now on; `set_catalogue` comes next."""
        self.tokenizer = load_tokenizer(model_path)  # fails fast, in the driver, on a bad path or mismatch
        self.model_path = storage.absolute_if_present(model_path)  # actors run in another directory
        self.catalogue_args: tuple | None = None
        if self.options.num_actors == 0:
            if self.local is None:
                import torch

                device = "cuda" if self._use_gpu(torch.cuda.is_available()) else "cpu"
                self.local = PrefixScorer(self.model_path, self.options, device)
            else:
                self.local.load(self.model_path)
            return
        import ray

        if self.actors:
            self._with_restarts(lambda: ray.get([a.load.remote(self.model_path) for a in self.actors]))
        else:
            self._with_restarts(lambda: None)

    def _use_gpu(self, available: bool) -> bool:
        return self.options.device == "cuda" or (self.options.device == "auto" and available)

    def _start_actors(self) -> None:
        import ray

        use_gpu = self._use_gpu(ray.cluster_resources().get("GPU", 0) > 0)
        remote = ray.remote(PrefixScorer).options(
            num_cpus=self.options.cpus_per_actor, num_gpus=1 if use_gpu else 0
        )
        self.actors = [
            remote.remote(self.model_path, self.options, "cuda" if use_gpu else "cpu", self.options.cpus_per_actor)
            for _ in range(self.options.num_actors)
        ]
        ray.get([a.ready.remote() for a in self.actors])
        if self.catalogue_args is not None:
            ray.get([a.set_catalogue.remote(*self.catalogue_args) for a in self.actors])

    def _with_restarts(self, call):
        """`call()` on live actors; on an actor's death, fresh actors and the call again."""
        from ray.exceptions import RayActorError

        while True:
            try:
                if not self.actors:
                    self._start_actors()
                return call()
            except RayActorError as exc:
                self.close()
                if self.restarts_left <= 0:
                    raise
                self.restarts_left -= 1
                log.warning(
                    "a scoring actor died (%s); starting the actors afresh (%d restarts left)",
                    str(exc).splitlines()[0],
                    self.restarts_left,
                )

    def set_catalogue(self, item_texts: list[str]) -> np.ndarray:
        """Tokenizes the catalogue once, hands it to every scorer; returns the scored tokens per item."""
        catalogue = tokenize_catalogue(self.tokenizer, item_texts)
        end_ids = end_token_ids(self.tokenizer, catalogue, self.options.end)
        self.end_kind = "none" if not end_ids else ("eos" if len(end_ids) == 1 else "separator or eos")
        if self.options.num_actors == 0:
            self.local.set_catalogue(catalogue, end_ids)
            return self.local.token_counts()
        import ray

        self.catalogue_args = (ray.put(catalogue), end_ids)
        self._with_restarts(
            lambda: ray.get([a.set_catalogue.remote(*self.catalogue_args) for a in self.actors])
        )
        return np.array([len(c) for c in catalogue]) + (1 if end_ids else 0)

    def score(self, prompts: list[str], candidates: list[np.ndarray] | None = None) -> np.ndarray:
        if self.options.num_actors == 0:
            return self.local.score_prompts(prompts, candidates)
        from ray.util import ActorPool

        tasks = [
            (prompts[i:j], None if candidates is None else candidates[i:j])
            for i, j in call_ranges(len(prompts), self.options.num_actors, self.options.users_per_task)
        ]

        def run() -> list:
            pool = ActorPool(self.actors)
            return list(pool.map(lambda actor, task: actor.score_prompts.remote(*task), tasks))

        parts = self._with_restarts(run)
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def close(self) -> None:
        """Stops the actors (a later call starts fresh ones with the current model)."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def call_ranges(users: int, actors: int, most: int) -> list[tuple[int, int]]:
    """Calls of at most `most` users, as many as the actors can take in equal rounds and of equal size:
    40 users in calls of 16 would leave one of two actors idle while the other scores the last 8."""
    rounds = -(-users // (actors * most))
    size = max(1, -(-users // (actors * rounds))) if users else 1
    return [(start, min(start + size, users)) for start in range(0, users, size)]


def score_forms(
    sums: np.ndarray,
    token_counts: np.ndarray,
    prior: np.ndarray | None,
    forms: list[str],
    log_popularity: np.ndarray | None = None,
    popularity_weights: Sequence[float] = (),
) -> dict:
    out = {}
    for form in forms:
        if form == "sum":
            out[form] = sums
        elif form == "mean":
            out[form] = sums / token_counts
        elif form == "pmi":
            out[form] = sums - prior
    for form in list(out):
        for weight in popularity_weights:
            out[popularity_variant(form, weight)] = out[form] + weight * log_popularity
    return out


def popularity_variant(form: str, weight: float) -> str:
    return f"{form}+pop{weight:g}"


SCORING = "llm-scoring"  # the key of the LLM methods' ScoringPool in an evaluation's shared resources


class LLMZeroShot(Method):
    """Any Hugging Face causal LM path, scored as given: the dataset's own model in `models` (e.g. one
    the pipeline fine-tuned on it), else `model`. Nothing is trained here. The LLM methods of an
    evaluation score on the same actors (the shared `SCORING` pool), one model after another."""

    model: str = ""
    pool: ScoringPool | None = None

    def __init__(self, spec, config):
        super().__init__(spec, config)
        self.shared: dict = {}

    def attach(self, shared: dict) -> None:
        self.shared = shared

    def forms(self) -> list[str]:
        return list(FORMS) if self.spec.form == "auto" else [self.spec.form]

    def variants(self) -> list[str]:
        forms, weights = self.forms(), self.config.llm.popularity_prior
        return forms + [popularity_variant(form, weight) for form in forms for weight in weights]

    def fit(self, dataset: SplitDataset) -> None:
        self.model = self.spec.model_for(dataset.name)
        if not self.model:
            raise CPRecError(f"method {self.spec.label()!r} has no model for dataset {dataset.name!r}")
        pool = self.shared.get(SCORING)
        if pool is None:
            pool = self.shared[SCORING] = ScoringPool(self.model, self.config.llm)
        else:
            pool.load(self.model)
        self.pool = pool
        self.token_counts = self.pool.set_catalogue(dataset.item_texts)
        self.prior = None
        if "pmi" in self.forms():
            self.prior = self.pool.score([empty_prompt(dataset.domain)])[0]
        self.log_popularity = np.log1p(dataset.train_counts()) if self.config.llm.popularity_prior else None

    def prompt(self, dataset: SplitDataset, split: str, user: int) -> str:
        history = dataset.history(split, user)[-self.config.llm.max_history :]
        return history_prompt(dataset.domain, [dataset.item_texts[i] for i in history])

    def score(self, dataset, split, users, candidates=None):
        prompts = [self.prompt(dataset, split, int(u)) for u in users]
        lists = None if candidates is None else [np.flatnonzero(row) for row in candidates]
        sums = self.pool.score(prompts, lists)
        return score_forms(
            sums, self.token_counts, self.prior, self.forms(), self.log_popularity, self.config.llm.popularity_prior
        )

    def info(self) -> dict:
        return {
            "model": self.model,
            "fine_tuned": self.spec.fine_tuned,
            "end": getattr(self.pool, "end_kind", ""),
            "max_history": self.config.llm.max_history,
        }
