"""Full-catalogue LLM scoring throughput: shared-prefix batched scorer vs. one forward per (user, item).

A tiny random Llama (byte-level BPE trained on the catalogue) scores a generated catalogue for a few
users' history prompts, in this process, both ways, in one run; the scores are checked to agree.

    python benchmarks/eval_scoring.py [--items 2000] [--users 8] [--naive-users 2] [--batch-size 256]

Prints one JSON line (users/s of each scorer and the speed-up) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from cprec.core.template import history_prompt, item_text
from cprec.evaluator.config import LLMConfig
from cprec.evaluator.methods.llm import PrefixScorer, end_token_ids, tokenize_catalogue

WORDS = [
    "amber",
    "velvet",
    "harbor",
    "quiet",
    "cedar",
    "lantern",
    "copper",
    "meadow",
    "silver",
    "falcon",
    "linen",
    "orchard",
    "cobalt",
    "ember",
    "willow",
    "granite",
    "maple",
    "coral",
    "indigo",
    "tide",
    "summit",
    "prairie",
    "juniper",
    "saffron",
    "marble",
]
KINDS = [
    "lamp",
    "kettle",
    "scarf",
    "novel",
    "mug",
    "clock",
    "candle",
    "jacket",
    "planter",
    "puzzle",
    "easel",
    "notebook",
]


def make_catalogue(size: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        item_text(
            "Home_and_Kitchen",
            " ".join(rng.choice(WORDS, 3)) + f" {rng.choice(KINDS)} {i}",
            f"{rng.choice(WORDS).title()} Works",
            str(rng.choice(KINDS)),
        )
        for i in range(size)
    ]


def make_model(path: Path, texts: list[str], hidden: int, layers: int) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from cprec.data_prep.tokens import train_tokenizer

    fast = train_tokenizer(texts, vocab_size=2048)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--users", type=int, default=8, help="users scored by the shared-prefix scorer")
    parser.add_argument("--naive-users", type=int, default=2, help="users scored one forward per item")
    parser.add_argument("--history", type=int, default=20, help="history items per prompt")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    texts = make_catalogue(args.items, seed=0)
    rng = np.random.default_rng(1)
    prompts = [
        history_prompt(
            "Home_and_Kitchen", [texts[i] for i in rng.choice(args.items, args.history, replace=False)]
        )
        for _ in range(max(args.users, args.naive_users))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(Path(tmp) / "model", texts, args.hidden, args.layers)
        scorer = PrefixScorer(str(path), LLMConfig(batch_size=args.batch_size), device=args.device)
        catalogue = tokenize_catalogue(scorer.tokenizer, texts)
        scorer.set_catalogue(catalogue, end_token_ids(scorer.tokenizer, catalogue, "item_end"))
        scorer.score_prompts(prompts[:1])  # warm-up

        started = time.perf_counter()
        shared = scorer.score_prompts(prompts[: args.users])
        shared_s = time.perf_counter() - started

        started = time.perf_counter()
        naive = np.stack(
            [
                scorer.naive_score_prompt(scorer.prompt_ids(p), np.arange(args.items))
                for p in prompts[: args.naive_users]
            ]
        )
        naive_s = time.perf_counter() - started
        prompt_tokens = np.mean([len(scorer.prompt_ids(p)) for p in prompts])

    agree = float(np.abs(shared[: args.naive_users] - naive).max())
    result = {
        "items": args.items,
        "model": f"llama hidden={args.hidden} layers={args.layers} vocab={scorer.model.config.vocab_size}",
        "prompt_tokens_mean": round(float(prompt_tokens), 1),
        "candidate_tokens_mean": round(float(np.mean([len(c) for c in catalogue])), 1),
        "batch_size": args.batch_size,
        "shared_prefix_users_per_s": round(args.users / shared_s, 3),
        "naive_users_per_s": round(args.naive_users / naive_s, 4),
        "speedup": round((args.users / shared_s) / (args.naive_users / naive_s), 1),
        "max_abs_score_difference": agree,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
