"""Attention for many candidates after one shared prompt, without copying the prompt per candidate.

Scoring a catalogue runs a batch of candidates [B, T] after the same prompt of P tokens. With a KV
cache the prompt's keys and values are expanded to B rows and concatenated with the candidates' own
(a copy of B x P per layer), and the attention kernel gets a padding mask it cannot skip: on a CPU
that copy and the masked kernel were half of the scoring time. Here the attention is split in two
and merged in one softmax, as cascade attention does: every candidate query against the prompt's
keys (one matrix product over all rows, the prompt stored once) and against its own earlier tokens
(causal, T x T). Right padding needs no mask: a real token never attends to a later pad.

It is registered as a transformers attention implementation, so the model's own layers (projections,
rotary embedding, norms) run unchanged; the prompt pass stores each layer's keys and values
(`SharedPrefix.capture`), the candidate passes read them. Only models whose attention is plain
softmax attention over every earlier position use it (`cprec.core.architectures.plain_attention`);
the others keep the KV-cache path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAME = "cprec_shared_prefix"


@dataclass
class SharedPrefix:
    """Per layer, the prompt's keys and values [kv_heads, P, head_dim] (after rotary embedding)."""

    layers: dict = field(default_factory=dict)
    capture: bool = True


def use_shared_prefix_attention(model) -> None:
    """Switches `model` (one with `plain_attention`) to the shared-prefix attention."""
    from cprec.core.architectures import use_attention

    use_attention(model, NAME, shared_prefix_attention)


def shared_prefix_attention(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, shared_prefix=None, **kwargs
):
    """query [B, H, T, d]; key, value [B, KV, T, d]; returns ([B, T, H, d], None) like transformers' own."""
    import torch

    if kwargs.get("sliding_window") is not None:
        raise ValueError("shared-prefix attention does not implement sliding windows")
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if shared_prefix is None or shared_prefix.capture:
        # The prompt itself: one row, plain causal attention; its keys and values are kept.
        if shared_prefix is not None:
            if key.shape[0] != 1:
                raise ValueError("the shared prompt is encoded one at a time")
            shared_prefix.layers[module.layer_idx] = (key[0], value[0])
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout)
    prefix_keys, prefix_values = shared_prefix.layers[module.layer_idx]  # [KV, P, d]
    batch, heads, width, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    # [KV, B, G, T, d]: the heads sharing one key/value head side by side, so the prompt part is one
    # attention per key/value head over every (row, head, position) as its queries.
    q = query.view(batch, kv_heads, groups, width, dim).transpose(0, 1)
    on_prompt, prompt_lse = attend_to_prompt(
        q.reshape(kv_heads, -1, dim), prefix_keys, prefix_values, scaling, fused=query.device.type == "cpu"
    )
    on_prompt = on_prompt.view(kv_heads, batch, groups, width, dim)
    prompt_lse = prompt_lse.view(kv_heads, batch, groups, width, 1)
    # each candidate's own earlier tokens: T x T per row, small
    own = torch.matmul(q * scaling, key.transpose(0, 1).unsqueeze(2).transpose(-1, -2)).float()
    future = torch.ones(width, width, dtype=torch.bool, device=query.device).triu(1)
    own = own.masked_fill(future, float("-inf"))
    own_lse = torch.logsumexp(own, dim=-1, keepdim=True)
    on_own = torch.matmul(torch.exp(own - own_lse).to(value.dtype), value.transpose(0, 1).unsqueeze(2))
    # the two softmaxes merged: each part weighted by its share of the whole normaliser
    total = torch.logaddexp(prompt_lse, own_lse)
    out = on_prompt * torch.exp(prompt_lse - total).to(query.dtype) + on_own * torch.exp(own_lse - total).to(
        query.dtype
    )
    # head h uses key/value head h // G, the order transformers' repeat_kv gives
    return out.permute(1, 3, 0, 2, 4).reshape(batch, width, heads, dim), None


def attend_to_prompt(queries, keys, values, scaling, fused: bool):
    """softmax(q k^T * scaling) v and its log normaliser, per key/value head: queries [KV, N, d],
    keys and values [KV, P, d] -> ([KV, N, d], [KV, N] in float32). `fused` (CPU only) uses torch's
    flash-attention CPU kernel, which never writes the [N, P] scores to memory and returns the
    normaliser; the other way is plain matrix products, for any device."""
    import torch

    if fused:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            queries[None], keys[None], values[None], 0.0, False, scale=scaling
        )
        return out[0], lse[0].float()
    scores = torch.matmul(queries * scaling, keys.transpose(1, 2)).float()
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.exp(scores - lse[..., None]).to(values.dtype), values), lse
