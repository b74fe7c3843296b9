"""An s3:// out_dir, as docs/clusters.md runs `cprec run`: the data build, the outputs and the model
a run continues from all on object storage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.trainer.config import TrainConfig
from cprec.trainer.fit import fit


def upload(local: Path, uri: str) -> str:
    fs, path = storage.filesystem(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return uri


def config(data: str, out: str, model: str = "") -> TrainConfig:
    cfg = TrainConfig(data_dir=data, output_dir=out, model=model, steps=2, micro_batch_size=2, grad_accum=1)
    cfg.scaling.num_workers = 1
    cfg.checkpoint.every = 2
    cfg.eval_every = 2
    cfg.eval_batches = 1
    return cfg


def export_base(token_build: Path, local: Path, uri: str) -> str:
    """A tiny Qwen2 over the data's tokenizer, exported the Hugging Face way to `uri` (a user's own base model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(token_build / "tokenizer")
    shape = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1
    )
    AutoModelForCausalLM.from_config(shape).save_pretrained(local)
    tokenizer.save_pretrained(local)
    return upload(local, uri)


def test_training_reads_its_model_and_data_from_object_storage_and_writes_there(s3, ray_local, token_build, tmp_path):
    bucket = s3.bucket("train")
    data = upload(token_build, f"{bucket}/{tmp_path.name}/data")
    base = export_base(token_build, tmp_path / "base", f"{bucket}/{tmp_path.name}/base")
    out = f"{bucket}/{tmp_path.name}/cpt"
    result = fit(config(data, out, model=base))  # was: "Repo id must be in the form ..."
    assert result.model_dir == f"{out}/model"
    for name in ("model/model.safetensors", "model/tokenizer.json", "metrics.jsonl", "loss.png"):
        assert storage.exists(f"{out}/{name}"), name
    fs, path = storage.filesystem(result.metrics_file)
    with fs.open_input_stream(path) as stream:
        assert [json.loads(line)["step"] for line in stream.read().decode().splitlines()] == [1, 2]
    with pytest.raises(CPRecError, match=f"^model not found at {base}-missing$"):
        fit(config(data, f"{out}-2", model=f"{base}-missing"))
