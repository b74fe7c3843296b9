"""The training attentions over packed documents equal transformers' masked SDPA: document_sdpa
(loss and gradients) and flex attention (loss; it has no backward on a CPU)."""

from __future__ import annotations

import copy
import shutil

import pyarrow.parquet as pq
import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from cprec.core.errors import CPRecError
from cprec.trainer import attention
from cprec.trainer.config import TinyModelConfig
from cprec.trainer.loss import PackedCausalLM
from cprec.trainer.model import choose_attention, load_tokenizer, tiny_model

CPU, GPU = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def tokenizer(token_build):
    return load_tokenizer(str(token_build))


def rows_of(token_build, unit: str, count: int = 4) -> dict:
    table = pq.read_table(token_build / "tokens" / "train" / unit / "part-00000.parquet").slice(0, count)
    return {name: torch.tensor(table.column(name).to_pylist()) for name in ("input_ids", "position_ids", "document_ids")}


def test_layout_finds_documents_like_packed_sequence_detection():
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1], [2, 3, 0, 1, 2, 3, 4, 5]])
    document_ids = torch.tensor([[0, 0, 0, -1, -1, -1, 1, 1], [1, 1, 2, 2, 2, 2, 2, 2]])
    layout = attention.document_layout(position_ids, document_ids, bucket=4)
    # documents: [0:3], the padding run [3:6] as one and apart from [0:3] though its positions go on,
    # [6:8]; the second row starts afresh at 8 though its positions go on from the first row's end;
    # [10:16]
    assert layout.shapes == [(4, 4), (1, 8)]
    assert layout.slots.tolist() == [0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 7, 7, 8, 9, 9, 9, *range(10, 16), 15, 15]
    assert layout.take.tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 12, 13, *range(16, 22)]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("unit", ["mixed", "catalog"])
def test_document_attention_equals_masked_sdpa_in_loss_and_gradients(tokenizer, token_build, arch, unit):
    torch.manual_seed(0)
    masked = tiny_model(TinyModelConfig(arch=arch), tokenizer)
    per_document = copy.deepcopy(masked)
    choose_attention(per_document, attention.NAME, CPU)
    assert per_document.config._attn_implementation == attention.NAME
    rows = rows_of(token_build, unit)
    assert (rows["document_ids"] < 0).any() and (rows["document_ids"].max(dim=1).values >= 1).any()
    losses = []
    for model in (masked, per_document):
        loss, _ = PackedCausalLM(model)(**rows)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(masked.named_parameters(), per_document.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_auto_takes_document_attention_only_where_the_architecture_allows(tokenizer):
    tiny = tiny_model(TinyModelConfig(), tokenizer)
    choose_attention(tiny, "auto", CPU)
    assert tiny.config._attn_implementation == attention.NAME
    windowed = MistralForCausalLM(
        MistralConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, sliding_window=8,
        )
    )
    choose_attention(windowed, "auto", CPU)
    assert windowed.config._attn_implementation == "sdpa"
    with pytest.raises(CPRecError, match="attn_implementation=document_sdpa needs plain causal attention"):
        choose_attention(windowed, attention.NAME, CPU)
    choose_attention(windowed, "eager", CPU)  # any other choice is transformers' own, left as loaded
    assert windowed.config._attn_implementation == "sdpa"


def test_auto_takes_flex_attention_on_a_gpu_and_flex_is_refused_for_cpu_training(tokenizer):
    on_gpu = tiny_model(TinyModelConfig(), tokenizer)
    choose_attention(on_gpu, "auto", GPU)  # only the device's type decides: no GPU needed here
    assert on_gpu.config._attn_implementation == "flex_attention"
    with pytest.raises(CPRecError, match="flex_attention trains only on a GPU"):
        choose_attention(tiny_model(TinyModelConfig(), tokenizer), "flex_attention", CPU)


@pytest.mark.skipif(shutil.which("g++") is None, reason="flex attention on a CPU compiles C++ through inductor")
@pytest.mark.parametrize("arch", ["qwen2"])
def test_flex_attention_equals_masked_sdpa_in_loss(tokenizer, token_build, arch):
    """The BlockMask transformers builds from packed position_ids keeps documents apart exactly as the
    SDPA mask does (right padding included); flex attention's gradients are torch's own and have no
    CPU implementation: benchmarks/gpu_check.py compares them on a GPU."""
    torch.manual_seed(0)
    masked = tiny_model(TinyModelConfig(arch=arch), tokenizer)
    flex = copy.deepcopy(masked)
    flex.set_attn_implementation("flex_attention")
    rows = rows_of(token_build, "mixed")
    with torch.no_grad():
        losses = [PackedCausalLM(model)(**rows)[0] for model in (masked, flex)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
