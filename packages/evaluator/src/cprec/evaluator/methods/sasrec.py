"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018), ID-based.

Faithful to the paper and its reference code: item embeddings scaled by sqrt(d) plus learned
positional embeddings, dropout, `blocks` pre-norm blocks of causal self-attention (the query is the
layer-normed input, keys/values the raw input, residual on the query) and a point-wise two-layer
feed-forward network with its own residual, padding positions zeroed after every block, a final
layer norm, and a prediction that is the dot product of the hidden state with the shared item
embedding. Training: binary cross-entropy over each position's next item against one sampled
negative the user never had (`loss: bce`, the paper), or a softmax over the whole catalogue
(`loss: ce`). Early stopping on validation NDCG@10; the best weights are kept.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from cprec.evaluator.datasets import SplitDataset
from cprec.evaluator.methods import Method
from cprec.evaluator.metrics import count_ranks, rank_metrics


class PointWiseFeedForward(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class SASRec(nn.Module):
    """Item indices are 1..n_items; 0 is padding (sequences are left-padded to `max_len`)."""

    def __init__(self, n_items: int, hidden: int, max_len: int, blocks: int, heads: int, dropout: float):
        super().__init__()
        self.hidden = hidden
        self.item_embedding = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, hidden)
        self.embedding_dropout = nn.Dropout(dropout)
        self.attention_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.attentions = nn.ModuleList(
            nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True) for _ in range(blocks)
        )
        self.feed_forward_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.feed_forwards = nn.ModuleList(PointWiseFeedForward(hidden, dropout) for _ in range(blocks))
        self.last_norm = nn.LayerNorm(hidden, eps=1e-8)

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden states [batch, length, hidden] of left-padded item sequences [batch, length]."""
        length = sequences.shape[1]
        positions = torch.arange(length, device=sequences.device)
        x = self.item_embedding(sequences) * self.hidden**0.5 + self.position_embedding(positions)
        x = self.embedding_dropout(x)
        keep = (sequences != 0).unsqueeze(-1)
        x = x * keep
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=sequences.device), 1)
        for attention_norm, attention, feed_forward_norm, feed_forward in zip(
            self.attention_norms, self.attentions, self.feed_forward_norms, self.feed_forwards
        ):
            query = attention_norm(x)
            attended, _ = attention(query, x, x, attn_mask=causal, need_weights=False)
            x = feed_forward(feed_forward_norm(query + attended)) * keep
        return self.last_norm(x)

    def item_logits(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (hidden * self.item_embedding(items)).sum(-1)

    def catalogue_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item_embedding.weight[1:].T


def left_padded(histories: list[np.ndarray], max_len: int) -> np.ndarray:
    """Most recent `max_len` items of each history, shifted to 1-based ids, left-padded with 0."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, history in enumerate(histories):
        recent = history[-max_len:]
        if len(recent):
            out[row, max_len - len(recent) :] = recent + 1
    return out


class SASRecMethod(Method):
    runs_in_task = True

    def task_resources(self) -> dict:
        # Ray hides GPUs from a task that reserves none, so `auto` trains on the CPU there.
        return {**super().task_resources(), "num_gpus": 1 if self.config.sasrec.device == "cuda" else 0}

    def fit(self, dataset: SplitDataset) -> None:
        options = self.config.sasrec
        torch.manual_seed(self.config.seed)
        self.rng = np.random.default_rng(self.config.seed)
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if options.device == "auto" else options.device
        )
        self.model = SASRec(
            dataset.n_items, options.hidden, options.max_len, options.blocks, options.heads, options.dropout
        ).to(self.device)
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=options.lr, betas=(0.9, 0.98), weight_decay=options.weight_decay
        )
        # Each user's training history of n items gives n-1 (input, next item) positions.
        sequences = [t[-(options.max_len + 1) :] for t in dataset.train if len(t) >= 2]
        inputs = left_padded([s[:-1] for s in sequences], options.max_len)
        targets = left_padded([s[1:] for s in sequences], options.max_len)
        seen = [set(t.tolist()) for t in dataset.train if len(t) >= 2]
        self.curve: list[dict] = []
        best, best_state, waited, epoch = -1.0, None, 0, 0
        for epoch in range(1, options.epochs + 1):
            self.model.train()
            losses = []
            order = self.rng.permutation(len(sequences))
            for start in range(0, len(order), options.batch_size):
                batch = order[start : start + options.batch_size]
                loss = self._loss(inputs[batch], targets[batch], [seen[i] for i in batch], dataset.n_items)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            if epoch % options.eval_every and epoch != options.epochs:
                continue
            ndcg = self.validation_ndcg(dataset)
            self.curve.append(
                {"epoch": epoch, "loss": float(np.mean(losses)) if losses else 0.0, "valid_ndcg@10": ndcg}
            )
            if ndcg > best:
                best, best_state, waited = ndcg, copy.deepcopy(self.model.state_dict()), 0
            else:
                waited += 1
                if waited >= options.patience:
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.best_valid_ndcg, self.epochs_run = best, epoch

    def _loss(self, inputs: np.ndarray, targets: np.ndarray, seen: list[set], n_items: int) -> torch.Tensor:
        inputs_t = torch.as_tensor(inputs, device=self.device)
        targets_t = torch.as_tensor(targets, device=self.device)
        hidden = self.model.encode(inputs_t)
        real = targets_t != 0
        if self.config.sasrec.loss == "ce":
            logits = self.model.catalogue_logits(hidden[real])
            return nn.functional.cross_entropy(logits, targets_t[real] - 1)
        negatives = torch.as_tensor(self._negatives(targets.shape, seen, n_items), device=self.device)
        positive_logits = self.model.item_logits(hidden, targets_t)[real]
        negative_logits = self.model.item_logits(hidden, negatives)[real]
        bce = nn.functional.binary_cross_entropy_with_logits
        return bce(positive_logits, torch.ones_like(positive_logits)) + bce(
            negative_logits, torch.zeros_like(negative_logits)
        )

    def _negatives(self, shape: tuple[int, int], seen: list[set], n_items: int) -> np.ndarray:
        """One random item per position that the user never had in training (1-based ids)."""
        negatives = self.rng.integers(0, n_items, shape)
        for row, items in enumerate(seen):
            if len(items) >= n_items:
                continue
            for col in range(shape[1]):
                while negatives[row, col] in items:
                    negatives[row, col] = self.rng.integers(0, n_items)
        return negatives + 1

    @torch.no_grad()
    def validation_ndcg(self, dataset: SplitDataset) -> float:
        users = np.arange(dataset.n_users)
        scores = self.score(dataset, "valid", users)[""]
        excluded = np.zeros(scores.shape, dtype=bool)
        if self.config.mask_history:  # the same ranking rule as the evaluation itself
            for row, user in enumerate(users):
                excluded[row, dataset.history("valid", user)] = True
        greater, ties = count_ranks(scores, dataset.valid[users], excluded)
        return float(rank_metrics(greater, ties, [10], self.config.ties)["ndcg@10"].mean())

    @torch.no_grad()
    def score(self, dataset, split, users, candidates=None):
        self.model.eval()
        histories = [dataset.history(split, int(u)) for u in users]
        out = np.empty((len(users), dataset.n_items), dtype=np.float32)
        for start in range(0, len(users), 1024):
            batch = torch.as_tensor(left_padded(histories[start : start + 1024], self.config.sasrec.max_len))
            hidden = self.model.encode(batch.to(self.device))[:, -1]
            out[start : start + len(batch)] = self.model.catalogue_logits(hidden).float().cpu().numpy()
        return {"": out}

    def info(self) -> dict:
        return {"best_valid_ndcg@10": self.best_valid_ndcg, "epochs": self.epochs_run, "curve": self.curve}
