"""Memory-aware causal-LM loss on packed blocks.

With a 150k vocabulary the fp32 logits of a 2048-token batch outweigh the model's activations, so
the loss is computed from the last hidden states and the output head without keeping all logits:
liger-kernel's fused linear cross-entropy on GPUs when installed, else a chunked cross-entropy
whose chunks are recomputed in backward (only one chunk of logits is alive at a time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from cprec.trainer import attention

IGNORE = -100


def packed_labels(input_ids: torch.Tensor, document_ids: torch.Tensor) -> torch.Tensor:
    """Next-token targets aligned with `input_ids`: -100 at padding and at each document's first token,
    which must not be predicted from the end of the document before it."""
    labels = input_ids.long().clone()
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    labels[starts | (document_ids < 0)] = IGNORE
    return labels


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    return F.cross_entropy(logits, labels, reduction="sum")


def chunked_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int
) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` against `labels` (-100 ignored), chunk by chunk."""
    keep = labels != IGNORE
    hidden, labels = hidden[keep], labels[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, labels.numel(), chunk_tokens):
        end = start + chunk_tokens
        total = total + checkpoint(
            _chunk_loss, hidden[start:end], weight, labels[start:end], use_reentrant=False
        )
    return total


def fused_loss_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import liger_kernel.transformers.fused_linear_cross_entropy  # noqa: F401
    except ImportError:
        return False
    return True


class PackedCausalLM(nn.Module):
    """A causal LM whose forward takes packed blocks and returns (mean token loss, token count).

    Passing `position_ids` without an attention mask makes transformers' masking build a
    block-diagonal causal mask (packed-sequence detection), so no token attends across documents;
    with the `document_sdpa` attention no mask is built and each document is attended to on its own.
    """

    def __init__(self, model: nn.Module, chunk_tokens: int = 4096, fused: bool = False):
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens
        self.fused = None
        if fused:
            from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

            self.fused = LigerFusedLinearCrossEntropyLoss(reduction="sum")

    @property
    def head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, document_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = packed_labels(input_ids, document_ids)[:, 1:].reshape(-1)
        backbone = self.model.get_decoder()
        extra = {}
        if self.model.config._attn_implementation == attention.NAME:
            extra["document_layout"] = attention.document_layout(position_ids, document_ids)
        hidden = backbone(
            input_ids=input_ids.long(), position_ids=position_ids.long(), use_cache=False, **extra
        ).last_hidden_state
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        if self.fused is not None:
            total = self.fused(self.head.weight, hidden, labels)
        else:
            total = chunked_cross_entropy(hidden, self.head.weight, labels, self.chunk_tokens)
        # a micro-batch may hold no label at all (blocks of a lone EOS piece): keep the loss in the graph
        total = total + 0.0 * hidden.sum()
        count = (labels != IGNORE).sum()
        return total / count.clamp(min=1), count
