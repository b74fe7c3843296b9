"""The model: a Hugging Face causal LM by path or hub id, or a tiny Qwen2/Llama built from config,
always with the tokenizer of the data build."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.core.schemas import TOKENIZER_DIR
from cprec.trainer.config import TinyModelConfig, TrainConfig

log = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(data_dir: str) -> PreTrainedTokenizerBase:
    """The tokenizer the data was built with (copied from object storage first when remote)."""
    uri = storage.join(data_dir, TOKENIZER_DIR)
    if not storage.exists(uri):
        raise CPRecError(f"no tokenizer in the data build at {uri}")
    local = storage.local_path(uri)
    if not storage.is_local(uri):
        import pyarrow.fs as pafs

        local = Path(tempfile.mkdtemp(prefix="cprec-tokenizer-"))
        fs, path = storage.filesystem(uri)
        pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    tokenizer = AutoTokenizer.from_pretrained(str(local))
    if tokenizer.eos_token_id is None:
        raise CPRecError(f"the tokenizer at {uri} has no eos token; documents must end with one")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tiny_model(
    config: TinyModelConfig, tokenizer: PreTrainedTokenizerBase, attn_implementation: str = "sdpa"
) -> PreTrainedModel:
    """A randomly initialised Qwen2- or Llama-shaped causal LM over the tokenizer's vocabulary."""
    from transformers import LlamaConfig, Qwen2Config

    shape = {
        "vocab_size": len(tokenizer),
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "use_cache": False,
    }
    model_config = Qwen2Config(**shape) if config.arch == "qwen2" else LlamaConfig(**shape)
    return AutoModelForCausalLM.from_config(model_config, attn_implementation=attn_implementation)


def load_model(
    config: TrainConfig, tokenizer: PreTrainedTokenizerBase, dtype: torch.dtype
) -> PreTrainedModel:
    """The model to train, its embeddings sized to the tokenizer, its KV cache off (packed training)."""
    if not config.model:
        model = tiny_model(config.tiny, tokenizer, config.attn_implementation).to(dtype)
    else:
        check_tokenizer_matches(config.model, tokenizer, config.allow_tokenizer_mismatch)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                config.model, dtype=dtype, attn_implementation=config.attn_implementation
            )
        except OSError as exc:
            raise CPRecError(f"cannot load model {config.model!r}: {str(exc).splitlines()[0]}") from exc
        rows = model.get_input_embeddings().weight.shape[0]
        if rows < len(tokenizer):
            log.warning(
                "resizing %s's embeddings from %d to the tokenizer's %d tokens",
                config.model,
                rows,
                len(tokenizer),
            )
            model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False  # with a cache transformers would not detect the packed documents
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def apply_liger_kernels(model: PreTrainedModel, device: torch.device) -> None:
    """Swaps the decoder's RMSNorm, SwiGLU MLP and rotary embedding for liger-kernel's fused Triton
    kernels, in place. The loss is not touched: PackedCausalLM fuses the head and cross-entropy itself."""
    if device.type != "cuda":
        raise CPRecError(
            f"train: liger_kernels=true needs a CUDA device, this worker has {device.type!r} "
            "(liger-kernel's Triton kernels do not run on CPU; set scaling.use_gpu=true)"
        )
    try:
        from liger_kernel.transformers.monkey_patch import (
            MODEL_TYPE_TO_APPLY_LIGER_FN,
            _apply_liger_kernel_to_instance,
        )
    except ImportError as exc:
        raise CPRecError(
            "train: liger_kernels=true needs liger-kernel, which is not installed here "
            f"({exc}); pip install -e packages/trainer[gpu]"
        ) from exc
    model_type = getattr(model.config, "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise CPRecError(f"train: liger-kernel has no kernels for model type {model_type!r}")
    _apply_liger_kernel_to_instance(
        model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
    )


def compile_layers(model: PreTrainedModel) -> None:
    """torch.compile each decoder layer in place (regional compilation: one graph reused by every
    layer, parameter names and the HF export unchanged); embeddings, mask building and the loss stay eager."""
    for layer in model.get_decoder().layers:
        layer.compile()


def check_tokenizer_matches(model: str, tokenizer: PreTrainedTokenizerBase, allow: bool) -> None:
    """A model trained with another vocabulary would see unrelated embeddings: say so loudly."""
    local = Path(model)
    ships_tokenizer = not local.is_dir() or any((local / name).exists() for name in TOKENIZER_FILES)
    try:
        own = AutoTokenizer.from_pretrained(model) if ships_tokenizer else None
    except (OSError, ValueError):
        own = None
    if own is None:
        log.warning("%s ships no tokenizer; training it with the data build's tokenizer", model)
        return
    if own.get_vocab() == tokenizer.get_vocab():
        return
    message = (
        f"the data was tokenized with a different tokenizer ({len(tokenizer)} tokens) than model {model!r} "
        f"uses ({len(own)} tokens): its embeddings would not match the token ids; rebuild the data with "
        "`cprec data build tokens.tokenizer=<the model>` or set allow_tokenizer_mismatch=true"
    )
    if not allow:
        raise CPRecError(message)
    log.warning("%s (allowed by allow_tokenizer_mismatch)", message)
