"""GPU-only trainer options (liger_kernels, compile): off by default, and asked for where they cannot
run they fail at once with a message that says why, not deep inside a Ray worker."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.trainer.config import TrainConfig
from cprec.trainer.model import apply_liger_kernels


def test_fused_kernels_and_compile_are_off_by_default():
    config = load_config(TrainConfig, None, ["data_dir=d", "output_dir=o"])
    assert config.liger_kernels is False and config.compile is False


def test_liger_kernels_on_cpu_workers_is_a_clear_config_error():
    with pytest.raises(CPRecError, match=r"liger_kernels=true needs GPU workers \(scaling.use_gpu=true\)"):
        load_config(TrainConfig, None, ["data_dir=d", "output_dir=o", "liger_kernels=true"]).validate()
    gpu = load_config(TrainConfig, None, ["data_dir=d", "output_dir=o", "liger_kernels=true", "scaling.use_gpu=true"])
    gpu.validate()  # allowed when the workers have GPUs


def test_liger_kernels_on_a_cpu_device_is_refused_before_any_kernel_is_touched():
    config = Qwen2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        vocab_size=64,
    )
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(CPRecError, match="needs a CUDA device"):
        apply_liger_kernels(model, torch.device("cpu"))


def test_compile_is_refused_under_zero3():
    with pytest.raises(CPRecError, match="compile=true is not supported with deepspeed.zero_stage=3"):
        load_config(
            TrainConfig, None, ["data_dir=d", "output_dir=o", "compile=true", "deepspeed.zero_stage=3"]
        ).validate()
