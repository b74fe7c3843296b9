"""What CPRec's own attention code may assume about a Hugging Face causal LM.

The trainer's per-document attention and the evaluator's shared-prefix attention replace a model's
attention function with one computing softmax(q k^T * scaling) v over every earlier position of a
sequence. That is exactly a model's own only for architectures whose attention function is that
plain (rotary embeddings, q/k norms and grouped-query heads happen before it, in the model's own
layers): sliding windows, soft-capping or attention sinks would change the sum. Other models keep
transformers' SDPA.
"""

from __future__ import annotations

PLAIN_ATTENTION_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3"})


def plain_attention(config) -> bool:
    """Whether a transformers model config's attention is plain causal softmax attention everywhere."""
    text = config.get_text_config()
    if text.model_type not in PLAIN_ATTENTION_MODEL_TYPES:
        return False
    layer_types = getattr(text, "layer_types", None) or ["full_attention"]
    return all(t == "full_attention" for t in layer_types) and not getattr(text, "use_sliding_window", False)


def use_attention(model, name: str, function) -> None:
    """Registers `function` as transformers attention implementation `name` and switches `model` to it
    (its own layers, projections and rotary embeddings run unchanged)."""
    from transformers import AttentionInterface

    AttentionInterface.register(name, function)
    model.set_attn_implementation(name)
