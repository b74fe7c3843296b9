"""`base_model`: a pretrained LLM as the base, as is (issue 18's path, on a tiny random Llama here;
the real SmolLM2 comes from `cprec model fetch`, tests/trainer/test_pretrained.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from smallworld import HAND_WRITTEN_WORLD

from cprec.core.cli import main


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A 'pretrained' Llama with its own byte-level BPE, saved as a Hugging Face model directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from cprec.data_prep.tokens import train_tokenizer

    path = tmp_path_factory.mktemp("pretrained")
    tokenizer = train_tokenizer(["the general text a model read before us", "[Pet Supplies] Dog bowl"], 300)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_pretrained_base_is_used_as_is_and_its_tokenizer_tokenizes_the_corpus(tmp_path, ray_local, pretrained):
    from transformers import AutoTokenizer

    root = tmp_path / "run"
    overrides = [f"world={HAND_WRITTEN_WORLD}", f"out_dir={root}", f"base_model={pretrained}", "until=cpt"]
    assert main(["run", "--preset", "smoke", *overrides, "variants=[]", "cpt.steps=4"]) == 0
    stages = json.loads((root / "run.json").read_text())["stages"]
    assert "base" not in stages  # no catalogue pre-training
    data = Path(stages["data"]["path"])
    assert json.loads((data / "_STAGE.json").read_text())["config"]["tokens"]["tokenizer"] == str(pretrained)
    text = "[Pet Supplies] Dog bowl | brand: Acme"
    ours = AutoTokenizer.from_pretrained(data / "tokenizer")
    assert ours(text)["input_ids"] == AutoTokenizer.from_pretrained(pretrained)(text)["input_ids"]
    cpt = json.loads((Path(stages["cpt"]["path"]) / "_STAGE.json").read_text())["config"]
    assert cpt["model"] == str(pretrained)
    assert (Path(stages["cpt"]["path"]) / "model" / "model.safetensors").exists()
    # the same path holding another model (re-fetched, replaced) is not answered from the old stages
    (pretrained / "generation_config.json").write_text((pretrained / "generation_config.json").read_text() + "\n")
    assert main(["run", "--preset", "smoke", *overrides[:3], "until=data"]) == 0
    assert json.loads((root / "run.json").read_text())["stages"]["data"]["path"] != stages["data"]["path"]


def test_a_missing_base_model_fails_before_anything_runs(tmp_path, capsys):
    root = tmp_path / "run"
    missing = tmp_path / "models" / "smollm2-135m"
    assert main(["run", "--preset", "smoke", f"world={HAND_WRITTEN_WORLD}", f"out_dir={root}", f"base_model={missing}"]) == 2
    err = capsys.readouterr().err
    assert f"base_model {missing} does not exist" in err and "cprec model fetch smollm2-135m" in err
    assert not root.exists()
