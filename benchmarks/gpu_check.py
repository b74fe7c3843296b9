"""Seconds, not minutes, to learn that a GPU path computes the wrong thing, before a device run
spends its budget on it. Two checks, one line each, exit status 3 on a mismatch:

  - the scorer: a tiny model's catalogue scored on cuda (float32) equals the CPU's scores, and its
    bfloat16 scores are finite;
  - the training attentions: on packed blocks of several documents with right padding,
    `flex_attention` (auto's choice on a GPU) and `document_sdpa` give transformers' masked SDPA's
    loss and gradients in float32. Flex attention has no backward on a CPU, so this is where its
    gradients are checked (tests/trainer/test_attention.py checks its loss on the CPU).

    python benchmarks/gpu_check.py                 # on the GPU machine, from the repository root
    python benchmarks/gpu_check.py --device cpu    # a CPU smoke test of the script (flex left out)
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys
import tempfile

import numpy as np
import torch
from gpu_train import SHAPES  # the benchmarks' tiny model shape, one definition


def check_scorer(device: str) -> str:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "evaluator"))
    from eval_fixtures import catalogue, tiny_model

    from cprec.core.template import history_prompt
    from cprec.evaluator.config import LLMConfig
    from cprec.evaluator.methods.llm import ScoringPool

    texts = [row["text"] for row in catalogue("Garden", 40)]
    model = tiny_model(pathlib.Path(tempfile.mkdtemp()), ["\n".join(texts)] + texts, arch="qwen2")
    prompts = [history_prompt("Garden", texts[i : i + 3]) for i in range(5)]
    scores = {}
    for where, dtype in (("cpu", "float32"), (device, "float32"), (device, "bfloat16")):
        pool = ScoringPool(str(model), LLMConfig(num_actors=0, device=where, dtype=dtype))
        pool.set_catalogue(texts)
        scores[where, dtype] = pool.score(prompts)
    np.testing.assert_allclose(scores[device, "float32"], scores["cpu", "float32"], atol=1e-3)
    assert np.isfinite(scores[device, "bfloat16"]).all(), "bfloat16 scores are not finite"
    return f"the scorer on {device} (float32) matches the cpu; bfloat16 scores are finite"


def packed_rows(vocab: int, eos: int, pad: int, seq: int = 256, rows: int = 4) -> dict[str, torch.Tensor]:
    """Documents of history-like lengths packed as the data build packs them (the last row padded)."""
    from cprec.data_prep.tokens import pack_documents

    rng = np.random.default_rng(0)
    documents, total = [], 0
    while total < rows * seq - seq // 3:
        length = int(np.clip(rng.lognormal(np.log(60), 0.7), 4, seq - 1))
        documents.append(rng.integers(3, vocab, size=length).tolist() + [eos])
        total += length + 1
    table = pack_documents(documents, seq, pad)
    return {
        name: torch.tensor(np.stack(table.column(name).to_numpy(zero_copy_only=False)))
        for name in ("input_ids", "position_ids", "document_ids")
    }


def check_training_attention(device: str) -> str:
    from transformers import AutoModelForCausalLM, Qwen2Config

    from cprec.trainer import attention
    from cprec.trainer.loss import PackedCausalLM

    config = Qwen2Config(**SHAPES["tiny"], max_position_embeddings=512, eos_token_id=1, pad_token_id=0, use_cache=False)
    torch.manual_seed(0)
    masked = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").to(device)
    rows = {k: v.to(device) for k, v in packed_rows(config.vocab_size, eos=1, pad=0).items()}
    assert (rows["document_ids"] < 0).any(), "the check needs a padded row"
    others = {attention.NAME: copy.deepcopy(masked)}
    attention.use_document_attention(others[attention.NAME])
    if device == "cuda":  # flex attention has no backward on a CPU
        others["flex_attention"] = copy.deepcopy(masked)
        others["flex_attention"].set_attn_implementation("flex_attention")
    results = {}
    for name, model in {"sdpa": masked, **others}.items():
        loss, _ = PackedCausalLM(model)(**rows)
        loss.backward()
        results[name] = (loss.detach(), {n: p.grad for n, p in model.named_parameters()})
    reference_loss, reference_grads = results.pop("sdpa")
    for name, (loss, grads) in results.items():
        torch.testing.assert_close(loss, reference_loss, rtol=1e-4, atol=1e-5, msg=f"{name}: loss")
        for parameter, grad in grads.items():
            torch.testing.assert_close(
                grad, reference_grads[parameter], rtol=1e-3, atol=1e-5, msg=f"{name}: {parameter}"
            )
    return f"{', '.join(results)} on {device}: masked SDPA's loss and gradients on packed, padded blocks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu check: no CUDA device here (use --device cpu for a smoke test)")
    failed = False
    for check in (check_scorer, check_training_attention):
        try:
            print(f"gpu check: {check(args.device)}", flush=True)
        except AssertionError as error:
            failed = True
            print(f"gpu check FAILED ({check.__name__}): {error}", flush=True)
    sys.exit(3 if failed else 0)


if __name__ == "__main__":
    main()
