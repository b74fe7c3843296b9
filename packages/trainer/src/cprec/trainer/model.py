"""The model: a Hugging Face causal LM by path or hub id, or a tiny Qwen2/Llama built from config,
always with the tokenizer of the data build."""

from __future__ import annotations

import logging
import os
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from cprec.core import storage, template
from cprec.core import tokenizer as core_tokenizer
from cprec.core.architectures import PLAIN_ATTENTION_MODEL_TYPES, plain_attention
from cprec.core.errors import CPRecError
from cprec.core.schemas import TOKENIZER_DIR
from cprec.trainer import attention
from cprec.trainer.config import TinyModelConfig, TrainConfig

log = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
# digits, punctuation before the separator and non-ASCII: where tokenizer pipelines differ
PROBE = template.document(
    "domain", "Garden", [template.item_text("Garden", "Hose 15.5 m (2-pack) — Größe 42, 東京 #3!", "Acme")]
)


def load_tokenizer(data_dir: str) -> PreTrainedTokenizerBase:
    """The tokenizer the data was built with (from this node's cache when remote)."""
    # made absolute, so that a missing relative directory is reported as missing, never looked up on the hub
    uri = storage.absolute(storage.join(data_dir, TOKENIZER_DIR))
    return core_tokenizer.load_tokenizer(uri, what="data build tokenizer")


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
    config: TrainConfig, tokenizer: PreTrainedTokenizerBase, dtype: torch.dtype, device: torch.device | None = None
) -> PreTrainedModel:
    """The model to train on `device` (where it will run: it decides `auto`'s attention), its
    embeddings sized to the tokenizer, its KV cache off (packed training)."""
    implementation = "sdpa" if config.attn_implementation in ("auto", attention.NAME) else config.attn_implementation
    if not config.model:
        model = tiny_model(config.tiny, tokenizer, implementation).to(dtype)
    else:
        check_tokenizer_matches(config.model, tokenizer, config.allow_tokenizer_mismatch)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                storage.local_copy(config.model), dtype=dtype, attn_implementation=implementation
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
    choose_attention(model, config.attn_implementation, device or torch.device("cpu"))
    model.config.use_cache = False  # with a cache transformers would not detect the packed documents
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    check_export_tokenizer(model, tokenizer)
    return model


def choose_attention(model: PreTrainedModel, choice: str, device: torch.device) -> None:
    """`auto`: on a GPU transformers' `flex_attention` where the model supports it (a document/causal
    BlockMask from the packed `position_ids`: no materialised mask, only the blocks inside documents
    computed); elsewhere `document_sdpa` where the architecture's attention is plain (flex attention has
    no backward on a CPU). `document_sdpa` when asked for; any other choice is transformers' own, as
    the model was loaded with it."""
    if choice == "auto" and device.type == "cuda" and getattr(model, "_supports_flex_attn", False):
        model.set_attn_implementation("flex_attention")
        return
    if choice == "flex_attention" and device.type == "cpu":
        raise CPRecError(
            "attn_implementation=flex_attention trains only on a GPU (PyTorch's flex attention has no "
            "backward on a CPU); use auto, document_sdpa or sdpa"
        )
    if choice not in ("auto", attention.NAME):
        return
    if not plain_attention(model.config):
        if choice == "auto":
            return
        raise CPRecError(
            f"attn_implementation={attention.NAME} needs plain causal attention (model types "
            f"{', '.join(sorted(PLAIN_ATTENTION_MODEL_TYPES))}, no sliding window); "
            f"this model is {model.config.model_type!r}: use auto or sdpa"
        )
    attention.use_document_attention(model)


def check_export_tokenizer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuses, before any training, a model whose export would reload the tokenizer with other ids:
    transformers 5 picks the tokenizer class by the model type (every `qwen2` checkpoint loads as
    Qwen2Tokenizer, which rebuilds Qwen2's pre-tokenizer whatever tokenizer.json says)."""
    with tempfile.TemporaryDirectory(prefix="cprec-export-check-") as directory:
        model.config.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        reloaded = AutoTokenizer.from_pretrained(directory)
    if reloaded(PROBE)["input_ids"] != tokenizer(PROBE)["input_ids"]:
        raise CPRecError(
            f"train: the export of this {model.config.model_type} model would reload the data's "
            f"{type(tokenizer).__name__} as {type(reloaded).__name__}, which tokenizes differently; rebuild the "
            "data with this version's tokenizer or train a model of the tokenizer's own family"
        )


def export_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: str, state_dict: dict | None = None
) -> None:
    """The Hugging Face export (weights, config, generation config, tokenizer) with the KV cache on, so a
    plain generate() uses it; the model itself keeps it off for packed training."""
    configs = (model.config, model.generation_config)
    cached = [c.use_cache for c in configs]
    for c in configs:
        c.use_cache = True
    try:
        model.save_pretrained(directory, state_dict=state_dict)
    finally:
        for c, value in zip(configs, cached):
            c.use_cache = value
    tokenizer.save_pretrained(directory)


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
    local = storage.local_copy(model)
    ships_tokenizer = not os.path.isdir(local) or any(os.path.exists(os.path.join(local, n)) for n in TOKENIZER_FILES)
    try:
        own = AutoTokenizer.from_pretrained(local) if ships_tokenizer else None
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
