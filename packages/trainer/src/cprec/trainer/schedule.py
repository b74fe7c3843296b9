"""The Warmup-Stable-Annealing schedule (docs/design.md §6).

transformers' `get_wsd_schedule` is the scheduler for the cosine, linear and 1-sqrt shapes (with its
`min_lr_ratio`); only the exponential shape, which it lacks, has a lambda of our own. `wsa_lr` reads
the multiplier from the very scheduler training uses, so the plot, the tests and training agree.

Step t (0-based) trains with the LR of t: warmup rises linearly from min_lr over W steps, stable
holds peak_lr for S steps, annealing falls from peak_lr towards min_lr over A steps (reached at T).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cprec.trainer.config import PHASES, ScheduleConfig

if TYPE_CHECKING:
    import torch


def phase_steps(total: int, config: ScheduleConfig) -> tuple[int, int, int]:
    """(W, S, A) with W = round(w*T), S = round(s*T), A = T - W - S."""
    config.validate()
    warmup = round(config.warmup * total)
    stable = min(round(config.stable * total), total - warmup)
    return warmup, stable, total - warmup - stable


def phase_at(step: int, total: int, config: ScheduleConfig) -> str:
    warmup, stable, _ = phase_steps(total, config)
    if step < warmup:
        return PHASES[0]
    return PHASES[1] if step < warmup + stable else PHASES[2]


def make_scheduler(
    optimizer: torch.optim.Optimizer, total: int, config: ScheduleConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """The torch LR scheduler of the WSA schedule; the optimizer's lr must be peak_lr."""
    import torch
    from transformers import get_wsd_schedule

    warmup, stable, annealing = phase_steps(total, config)
    if config.shape != "exponential":
        return get_wsd_schedule(
            optimizer,
            num_warmup_steps=warmup,
            num_stable_steps=stable,
            num_decay_steps=annealing,
            decay_type=config.shape,
            min_lr_ratio=config.min_lr_ratio,
        )
    ratio = config.min_lr_ratio

    def exponential(step: int) -> float:
        if step < warmup:
            return ratio + (1.0 - ratio) * step / max(1, warmup)
        if step < warmup + stable:
            return 1.0
        progress = min(1.0, (step - warmup - stable) / max(1, annealing))
        return math.exp(progress * math.log(ratio))  # geometric: equal LR ratio per step

    return torch.optim.lr_scheduler.LambdaLR(optimizer, exponential)


def lr_factors(total: int, config: ScheduleConfig, steps: range | None = None) -> list[float]:
    """LR / peak_lr at each step, read from the training scheduler itself."""
    import torch

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    factor = make_scheduler(optimizer, total, config).lr_lambdas[0]
    return [float(factor(step)) for step in (steps if steps is not None else range(total))]


def wsa_lr(step: int, total: int, config: ScheduleConfig) -> float:
    """The learning rate at (0-based) `step` of a `total`-step run."""
    return config.peak_lr * lr_factors(total, config, range(step, step + 1))[0]


def mixture_at(step: int, total: int, config: ScheduleConfig) -> dict[str, float]:
    """The kind shares configured for the phase of `step` ({} = in proportion to rows)."""
    return dict(config.mixture.for_phase(phase_at(step, total, config)))
