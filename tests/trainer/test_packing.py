"""Packed blocks: attention and positions stay inside each document; the loss equals separate runs."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from cprec.trainer.config import TinyModelConfig
from cprec.trainer.loss import IGNORE, PackedCausalLM, chunked_cross_entropy, packed_labels
from cprec.trainer.model import load_tokenizer, tiny_model


@pytest.fixture(scope="module")
def tokenizer(token_build):
    return load_tokenizer(str(token_build))


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model(request, tokenizer):
    torch.manual_seed(0)
    return tiny_model(TinyModelConfig(arch=request.param), tokenizer).eval()


def packed_rows(token_build, count=4):
    table = pq.read_table(token_build / "tokens" / "train" / "mixed" / "part-00000.parquet").slice(0, count)
    return {
        name: torch.tensor(table.column(name).to_pylist())
        for name in ("input_ids", "position_ids", "document_ids")
    }


def test_labels_mask_padding_and_document_starts():
    document_ids = torch.tensor([[0, 0, 0, 1, 1, -1, -1]])
    labels = packed_labels(torch.arange(7).unsqueeze(0), document_ids)
    assert labels.tolist() == [[IGNORE, 1, 2, IGNORE, 4, IGNORE, IGNORE]]


def test_packed_log_probs_equal_separate_documents(model, token_build):
    rows = packed_rows(token_build)
    assert (rows["document_ids"].max(dim=1).values >= 1).all(), "fixture rows must hold several documents"
    with torch.no_grad():
        packed = model(input_ids=rows["input_ids"], position_ids=rows["position_ids"]).logits.log_softmax(-1)
        for b in range(rows["input_ids"].shape[0]):
            for doc in rows["document_ids"][b].unique().tolist():
                if doc < 0:
                    continue
                where = (rows["document_ids"][b] == doc).nonzero().squeeze(1)
                alone = model(input_ids=rows["input_ids"][b, where].unsqueeze(0)).logits.log_softmax(-1)[0]
                torch.testing.assert_close(packed[b, where], alone, atol=2e-5, rtol=1e-4)


def test_packed_loss_equals_mean_over_documents_run_separately(model, token_build):
    rows = packed_rows(token_build)
    wrapper = PackedCausalLM(model, chunk_tokens=50)
    with torch.no_grad():
        loss, count = wrapper(**rows)
        total, tokens = 0.0, 0
        for b in range(rows["input_ids"].shape[0]):
            for doc in rows["document_ids"][b].unique().tolist():
                if doc < 0:
                    continue
                ids = rows["input_ids"][b, rows["document_ids"][b] == doc].unsqueeze(0)
                logits = model(input_ids=ids).logits[0, :-1]
                total += F.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
                tokens += ids.shape[1] - 1
    assert count.item() == tokens
    assert loss.item() == pytest.approx(total / tokens, rel=1e-5)


def test_chunked_cross_entropy_matches_full_logits_and_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    labels = torch.randint(0, 50, (37,))
    labels[::5] = IGNORE
    chunked = chunked_cross_entropy(hidden, weight, labels, chunk_tokens=8)
    chunked.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    full = F.cross_entropy(hidden @ weight.t(), labels, ignore_index=IGNORE, reduction="sum")
    full.backward()
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(grads[0], hidden.grad)
    torch.testing.assert_close(grads[1], weight.grad)


def test_a_micro_batch_without_labels_still_backpropagates(model):
    rows = {
        "input_ids": torch.tensor([[5, 0, 0, 0], [7, 0, 0, 0]]),
        "position_ids": torch.zeros(2, 4, dtype=torch.long),
        "document_ids": torch.tensor([[0, -1, -1, -1], [0, -1, -1, -1]]),
    }
    loss, count = PackedCausalLM(model)(**rows)
    assert count.item() == 0 and loss.item() == 0.0
    loss.backward()  # DeepSpeed's backward asserts a loss with a graph
