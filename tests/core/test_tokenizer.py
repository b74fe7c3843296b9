"""The one tokenizer loader's rules: a missing path is named, EOS is required and stands in for a
missing pad, and a model directory's embeddings must cover its tokenizer."""

import subprocess
import sys

import pytest

from cprec.core.errors import CPRecError
from cprec.core.tokenizer import load_tokenizer

transformers = pytest.importorskip("transformers")

WORDS = ["<eos>", "<pad>", "<unk>", "the", "velvet", "harbor"]


def save_tokenizer(directory, **special_tokens):
    """A word-level fast tokenizer over WORDS, saved as a Hugging Face tokenizer directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **special_tokens)
    tokenizer.save_pretrained(str(directory))
    return directory


def save_model_config(directory, vocab_size):
    transformers.Qwen2Config(vocab_size=vocab_size, hidden_size=8, num_hidden_layers=1).save_pretrained(str(directory))


def test_a_missing_local_path_is_named_not_looked_up_on_the_hub(tmp_path, monkeypatch):
    with pytest.raises(CPRecError, match=f"^model not found: {tmp_path / 'missing'} does not exist$"):
        load_tokenizer(str(tmp_path / "missing"), what="model")
    # 'data/tokenizer' is shaped like a hub id, but a local data/ makes it a path
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CPRecError, match="^tokenizer not found: data/tokenizer does not exist$"):
        load_tokenizer("data/tokenizer")


def test_a_directory_without_a_tokenizer_cannot_be_loaded(tmp_path):
    with pytest.raises(CPRecError, match=f"^cannot load tokenizer '{tmp_path}'"):
        load_tokenizer(str(tmp_path))


def test_eos_is_required_and_stands_in_for_a_missing_pad(tmp_path):
    with pytest.raises(CPRecError, match="has no EOS token"):
        load_tokenizer(str(save_tokenizer(tmp_path / "no_eos")))
    tokenizer = load_tokenizer(str(save_tokenizer(tmp_path / "eos_only", eos_token="<eos>")), require_fast=True)
    assert tokenizer.is_fast
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 0)
    tokenizer = load_tokenizer(str(save_tokenizer(tmp_path / "both", eos_token="<eos>", pad_token="<pad>")))
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1)


def test_a_model_must_embed_every_token_of_its_tokenizer(tmp_path):
    model = save_tokenizer(tmp_path / "model", eos_token="<eos>")
    save_model_config(model, vocab_size=3)
    assert load_tokenizer(str(model)).eos_token == "<eos>"  # without the check, the config is not read
    mismatch = f"^tokenizer mismatch at {model}: the tokenizer has \\d+ tokens, the model embeds 3$"
    with pytest.raises(CPRecError, match=mismatch):
        load_tokenizer(str(model), what="model", model_vocab_check=True)
    save_model_config(model, vocab_size=100)  # embeddings padded past the vocabulary are fine
    assert load_tokenizer(str(model), what="model", model_vocab_check=True).eos_token == "<eos>"
    tokenizer_only = save_tokenizer(tmp_path / "tokenizer", eos_token="<eos>")
    with pytest.raises(CPRecError, match="^cannot load model"):  # a model directory needs its config
        load_tokenizer(str(tokenizer_only), what="model", model_vocab_check=True)


def test_core_imports_without_transformers():
    blocked = "import sys; sys.modules['transformers'] = None; import cprec.core.tokenizer, cprec.core.sources"
    subprocess.run([sys.executable, "-c", blocked], check=True)
