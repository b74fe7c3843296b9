"""Exports reload identically: a plain `AutoTokenizer.from_pretrained` of an export (or of the data
build's tokenizer directory) gives the ids the model was trained on, and a plain `generate()` runs
with the KV cache, for every tiny architecture."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Cache, LlamaConfig, Qwen2Config, Qwen2Tokenizer

from cprec.core import template
from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.core.tokenizer import load_tokenizer as load_any_tokenizer
from cprec.data_prep import tokens
from cprec.trainer.config import TinyModelConfig, TrainConfig
from cprec.trainer.model import export_model, load_model, load_tokenizer, tiny_model

ITEMS = [template.item_text("Books", f"The Velvet Harbor {n}", "Northwind Press", "Mystery") for n in range(20)] + [
    template.item_text("Home_and_Kitchen", f"Steel kettle 1.{n} L (2-pack)", None, "Kettles") for n in range(20)
]
DOCUMENTS = [template.document("domain", "Books", ITEMS[n : n + 3]) for n in range(0, 20, 2)] + [
    template.document("catalog", "Home_and_Kitchen", ITEMS[n : n + 2]) for n in range(20, 40, 2)
]
TEXTS = [
    template.document("domain", "Home_and_Kitchen", ITEMS[21:24]),
    template.document("mixed", template.MIXED_DOMAIN, [ITEMS[3], ITEMS[33]]),
    "Price 12.99 — Größe 42, 東京 #3!",
    "#1: 2,500 units...\n\n  (50% off)!\n",
]
TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)


def build_ids(tokenizer) -> list[list[int]]:
    """The ids a data build writes for TEXTS: its Ray workers encode with the Rust backend."""
    return tokens.encode(tokens.TokenizerSpec.of(tokenizer).backend(), TEXTS).to_pylist()


def export(tokenizer, root: Path, arch: str) -> tuple[Path, torch.nn.Module]:
    """What training does with a data build's tokenizer: save it in the build, load it back, train, export."""
    tokens.save_tokenizer(tokenizer, str(root / "data" / "tokenizer"))
    trained = load_tokenizer(str(root / "data"))
    torch.manual_seed(0)
    model = tiny_model(replace(TINY, arch=arch), trained).eval()
    export_model(model, trained, str(root / "hf"))
    return root / "hf", model


def gpt2_style_tokenizer():
    """A byte-level BPE with the GPT-2 regex, like Llama-3-style checkpoints (and the built-in tokenizer
    before it followed Qwen2's pipeline): tokenizer.json alone defines its pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[tokens.EOS_TOKEN, tokens.PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(DOCUMENTS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=tokens.EOS_TOKEN, pad_token=tokens.PAD_TOKEN)


def checkpoint(path: Path, tokenizer, arch: str) -> Path:
    """A local stand-in for a hub model directory: its config.json and its own tokenizer."""
    shape = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1}
    (Qwen2Config if arch == "qwen2" else LlamaConfig)(**shape).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tokenizer():
    return tokens.train_tokenizer(DOCUMENTS, vocab_size=400)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def exported(request, tokenizer, tmp_path_factory):
    return export(tokenizer, tmp_path_factory.mktemp(request.param), request.param)


def test_the_export_and_the_data_build_reload_the_training_ids(exported, tokenizer):
    directory, _ = exported
    expected = build_ids(tokenizer)
    for path in (directory.parent / "data" / "tokenizer", directory):
        reloaded = AutoTokenizer.from_pretrained(path)
        assert reloaded(TEXTS)["input_ids"] == expected, path
        assert (reloaded.eos_token, reloaded.pad_token) == (tokens.EOS_TOKEN, tokens.PAD_TOKEN)
        assert reloaded.decode(expected[0]) == TEXTS[0]


def test_the_export_turns_the_kv_cache_on_and_training_keeps_it_off(exported):
    directory, model = exported
    assert json.loads((directory / "config.json").read_text())["use_cache"] is True
    assert json.loads((directory / "generation_config.json").read_text())["use_cache"] is True
    assert model.config.use_cache is False and model.generation_config.use_cache is False


def test_a_plain_generate_on_the_export_uses_the_kv_cache(exported):
    directory, _ = exported
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    prompt = AutoTokenizer.from_pretrained(directory)(TEXTS[:1], return_tensors="pt")
    cached = model.generate(**prompt, max_new_tokens=4, do_sample=False, return_dict_in_generate=True)
    assert isinstance(cached.past_key_values, Cache)
    assert cached.past_key_values.get_seq_length() == cached.sequences.shape[1] - 1
    uncached = model.generate(**prompt, max_new_tokens=4, do_sample=False, use_cache=False)
    assert torch.equal(cached.sequences, uncached)


@pytest.mark.parametrize(
    ("own", "arch"),
    [(lambda: Qwen2Tokenizer().train_new_from_iterator(DOCUMENTS, 400), "qwen2"), (gpt2_style_tokenizer, "llama")],
)
def test_a_real_models_tokenizer_keeps_its_class_and_ids(tmp_path, own, arch):
    # as the data build loads tokens.tokenizer=<path>
    source = load_any_tokenizer(str(checkpoint(tmp_path / "model", own(), arch)), require_fast=True)
    directory, _ = export(source, tmp_path, arch)
    reloaded = AutoTokenizer.from_pretrained(directory)
    assert type(reloaded) is type(source)
    assert reloaded(TEXTS, add_special_tokens=False)["input_ids"] == build_ids(source)


def test_a_tokenizer_its_export_would_not_reproduce_is_refused_before_training(tmp_path):
    tokens.save_tokenizer(gpt2_style_tokenizer(), str(tmp_path / "tokenizer"))
    tokenizer = load_tokenizer(str(tmp_path))
    tiny = [f"tiny.{key}={value}" for key, value in vars(TINY).items() if key != "arch"]
    config = load_config(TrainConfig, None, [f"data_dir={tmp_path}", "output_dir=o", "tiny.arch=qwen2", *tiny])
    with pytest.raises(CPRecError, match="export of this qwen2 model would reload .* as Qwen2Tokenizer"):
        load_model(config, tokenizer, torch.float32)
    config = load_config(TrainConfig, None, [f"data_dir={tmp_path}", "output_dir=o", "tiny.arch=llama", *tiny])
    assert load_model(config, tokenizer, torch.float32).config.model_type == "llama"
