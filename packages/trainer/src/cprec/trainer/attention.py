"""Causal attention within each document of a packed block, without a block-diagonal mask.

A packed block holds several documents; each token may attend only to the earlier tokens of its own
document. transformers' SDPA path builds that as a [B, 1, S, S] mask, and a masked kernel computes
every one of the S x S scores of a block and then discards the cross-document ones: on a CPU it
was 40% of a training step of the default preset (documents of ~100 tokens in 512-token blocks).

`document_sdpa` gathers the documents of a micro-batch into batches of similar length (right-padded
to a multiple of `BUCKET` tokens) and runs plain causal SDPA on each, with no mask, so only the
scores inside documents are computed and the unmasked kernel is used. The right padding is harmless
under a causal mask (a real token never attends to a later one). Documents are found the way
transformers finds packed sequences: a new one starts where `position_ids` do not go up by one.
Registered as a transformers attention implementation, so a model's own layers run unchanged;
`PackedCausalLM` computes the layout once per micro-batch and hands it to every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NAME = "document_sdpa"
BUCKET = 32  # documents padded to a multiple of this many tokens: little padding, few kernel calls


@dataclass
class DocumentLayout:
    """Where each document of a [B, S] micro-batch lies in its flattened B*S tokens: the documents laid
    out as `shapes` batches of (documents, padded length), slot after slot."""

    slots: torch.Tensor  # [slots]: the token each slot reads (padding slots repeat their document's last)
    shapes: list[tuple[int, int]]
    take: torch.Tensor  # [B*S]: the slot of each token


def document_layout(position_ids: torch.Tensor, document_ids: torch.Tensor, bucket: int = BUCKET) -> DocumentLayout:
    """Documents as transformers' packed-sequence detection finds them (a new one where `position_ids`
    do not go up by one), except that a run of padding (`document_ids` < 0) is one, on its own:
    what padding attends to is never read."""
    batch, width = position_ids.shape
    pos, doc = position_ids.reshape(-1), document_ids.reshape(-1)
    starts = torch.ones_like(pos, dtype=torch.bool)
    pad = doc < 0
    starts[1:] = torch.where(pad[1:] | pad[:-1], pad[1:] != pad[:-1], pos[1:] != pos[:-1] + 1)
    starts[::width] = True  # a row never continues the previous one
    first = torch.nonzero(starts).squeeze(1)
    lengths = torch.diff(first, append=first.new_tensor([pos.numel()]))
    padded = torch.clamp((lengths + bucket - 1) // bucket * bucket, max=width)
    slots, shapes, real = [], [], []
    for size in torch.unique(padded).tolist():
        docs = torch.nonzero(padded == size).squeeze(1)
        offsets = torch.arange(size, device=pos.device)
        last = (first[docs] + lengths[docs] - 1)[:, None]
        slots.append(torch.minimum(first[docs, None] + offsets[None, :], last).reshape(-1))
        real.append((offsets[None, :] < lengths[docs, None]).reshape(-1))
        shapes.append((len(docs), size))
    slots_all, real_all = torch.cat(slots), torch.cat(real)
    take = torch.empty_like(pos, dtype=torch.long)
    take[slots_all[real_all]] = torch.nonzero(real_all).squeeze(1)
    return DocumentLayout(slots_all, shapes, take)


def use_document_attention(model) -> None:
    """Switches `model` (one with `plain_attention`) to `document_sdpa`."""
    from cprec.core.architectures import use_attention

    use_attention(model, NAME, document_attention)


def document_attention(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, document_layout=None, **kwargs
):
    """query [B, H, S, d]; key, value [B, KV, S, d]; returns ([B, S, H, d], None) like transformers' own."""
    if document_layout is None:
        raise ValueError(f"attention {NAME!r} needs the micro-batch's document_layout (PackedCausalLM passes it)")
    if kwargs.get("sliding_window") is not None:
        raise ValueError(f"attention {NAME!r} does not implement sliding windows")
    batch, heads, width, dim = query.shape
    groups = heads // key.shape[1]

    def tokens(states):  # [B, h, S, d] -> [B*S, h, d]
        return states.transpose(1, 2).reshape(batch * width, states.shape[1], dim)

    # one gather per tensor for all documents (each gather's backward is a scatter over B*S tokens)
    q, k, v = (tokens(states)[document_layout.slots] for states in (query, key, value))
    parts, begin = [], 0
    for docs, size in document_layout.shapes:
        end = begin + docs * size

        def batched(states):  # [n, h, L, d]
            return states[begin:end].view(docs, size, states.shape[1], dim).transpose(1, 2)

        keys, values = batched(k), batched(v)
        if groups > 1:
            keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(batched(q), keys, values, dropout_p=dropout, is_causal=True, scale=scaling)
        parts.append(out.transpose(1, 2).reshape(docs * size, heads, dim))
        begin = end
    out = torch.cat(parts)[document_layout.take]
    return out.view(batch, width, heads, dim), None
