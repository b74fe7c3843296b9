"""CPU benchmark: training tokens/s of packed vs. padded batches on the tiny model, in one run.

The same documents (lengths drawn like item-history documents) are laid out two ways and trained
for the same number of optimizer steps through the trainer's own loss module (PackedCausalLM):
  - packed: whole documents concatenated into fixed blocks (what `cprec data build` writes),
  - padded: one document per row, padded to the block length (what a naive loader does).
Tokens/s counts real (non-padding) tokens. Prints a Markdown table last and writes JSON.

    python benchmarks/train_throughput.py --block-len 512 --docs 512 --out /tmp/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import numpy as np
import torch

from cprec.trainer.config import TinyModelConfig
from cprec.trainer.loss import PackedCausalLM


class _Vocab:
    """Just what tiny_model reads from a tokenizer."""

    def __init__(self, size: int):
        self.size, self.bos_token_id, self.eos_token_id, self.pad_token_id = size, None, 1, 0

    def __len__(self) -> int:
        return self.size


def documents(count: int, block_len: int, rng: np.random.Generator) -> list[np.ndarray]:
    lengths = np.clip(rng.lognormal(mean=np.log(90), sigma=0.6, size=count).astype(int), 8, block_len)
    return [rng.integers(2, 4096, size=n) for n in lengths]


def packed(docs: list[np.ndarray], block_len: int) -> list[dict[str, torch.Tensor]]:
    rows, current, used = [], [], 0
    for doc in docs:
        if used + len(doc) > block_len:
            rows.append(current)
            current, used = [], 0
        current.append(doc)
        used += len(doc)
    rows.append(current)
    return [_row(r, block_len) for r in rows]


def padded(docs: list[np.ndarray], block_len: int) -> list[dict[str, torch.Tensor]]:
    return [_row([d], block_len) for d in docs]


def _row(docs: list[np.ndarray], block_len: int) -> dict[str, torch.Tensor]:
    ids = np.zeros(block_len, dtype=np.int64)
    pos = np.zeros(block_len, dtype=np.int64)
    did = np.full(block_len, -1, dtype=np.int64)
    at = 0
    for index, doc in enumerate(docs):
        ids[at : at + len(doc)], pos[at : at + len(doc)], did[at : at + len(doc)] = (
            doc,
            np.arange(len(doc)),
            index,
        )
        at += len(doc)
    return {
        "input_ids": torch.from_numpy(ids),
        "position_ids": torch.from_numpy(pos),
        "document_ids": torch.from_numpy(did),
    }


def train(rows: list[dict[str, torch.Tensor]], batch: int, steps: int, tiny: TinyModelConfig) -> dict:
    from cprec.trainer.model import tiny_model

    torch.manual_seed(0)
    model = PackedCausalLM(tiny_model(tiny, _Vocab(4096)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    real = seconds = 0.0
    for step in range(steps + 1):  # step 0 warms up and is not timed
        picked = [rows[(step * batch + i) % len(rows)] for i in range(batch)]
        inputs = {k: torch.stack([r[k] for r in picked]) for k in picked[0]}
        started = time.perf_counter()
        loss, _ = model(**inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            seconds += time.perf_counter() - started
            real += int((inputs["document_ids"] >= 0).sum())
    return {
        "rows": len(rows),
        "steps": steps,
        "real_tokens": real,
        "seconds": seconds,
        "tokens_per_s": real / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--block-len", type=int, default=512)
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="train_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tiny = TinyModelConfig(max_position_embeddings=args.block_len)
    docs = documents(args.docs, args.block_len, np.random.default_rng(0))
    results = {
        "packed": train(packed(docs, args.block_len), args.batch, args.steps, tiny),
        "padded": train(padded(docs, args.block_len), args.batch, args.steps, tiny),
    }
    report = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads",
        "model": {"hidden": tiny.hidden_size, "layers": tiny.num_layers, "vocab": 4096},
        "block_len": args.block_len,
        "batch": args.batch,
        "mean_doc_tokens": float(np.mean([len(d) for d in docs])),
        "results": results,
        "speedup": results["packed"]["tokens_per_s"] / results["padded"]["tokens_per_s"],
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(
        f"| layout | rows | real tokens/s |  (block {args.block_len}, batch {args.batch}, mean doc "
        f"{report['mean_doc_tokens']:.0f} tokens)"
    )
    print("| --- | --- | --- |")
    for name, result in results.items():
        print(f"| {name} | {result['rows']} | {result['tokens_per_s']:,.0f} |")
    print(f"packed / padded: {report['speedup']:.2f}x")


if __name__ == "__main__":
    main()
