"""The WSA schedule: values at every phase boundary for each annealing shape, invalid settings rejected."""

from __future__ import annotations

import math

import pytest
import torch

from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.trainer.config import ScheduleConfig, TrainConfig
from cprec.trainer.schedule import lr_factors, make_scheduler, mixture_at, phase_at, phase_steps, wsa_lr

PEAK, RATIO, TOTAL = 2e-3, 0.1, 100  # W=10, S=60, A=30


def schedule(shape: str, **kwargs) -> ScheduleConfig:
    return ScheduleConfig(peak_lr=PEAK, min_lr_ratio=RATIO, shape=shape, **kwargs)


# LR / peak halfway through annealing, for each shape
MIDDLE = {
    "cosine": RATIO + (1 - RATIO) * 0.5,
    "linear": RATIO + (1 - RATIO) * 0.5,
    "1-sqrt": RATIO + (1 - RATIO) * (1 - math.sqrt(0.5)),
    "exponential": math.sqrt(RATIO),
}


@pytest.mark.parametrize("shape", sorted(MIDDLE))
def test_values_at_phase_boundaries(shape):
    config = schedule(shape)
    assert phase_steps(TOTAL, config) == (10, 60, 30)
    lr = [wsa_lr(step, TOTAL, config) for step in range(TOTAL + 1)]
    assert lr[0] == pytest.approx(RATIO * PEAK)  # warmup starts at min_lr
    assert lr[5] == pytest.approx(PEAK * (RATIO + (1 - RATIO) * 0.5))  # linear warmup
    assert lr[9] < PEAK
    assert lr[10] == pytest.approx(PEAK)  # first stable step
    assert lr[69] == pytest.approx(PEAK)  # last stable step
    assert lr[70] == pytest.approx(PEAK)  # annealing starts at peak
    assert lr[85] == pytest.approx(PEAK * MIDDLE[shape])
    assert RATIO * PEAK < lr[99] < lr[85]  # still above min_lr on the last trained step
    assert lr[100] == pytest.approx(RATIO * PEAK)  # reaches min_lr at T
    annealing = lr[70:101]
    assert all(a >= b for a, b in zip(annealing, annealing[1:]))
    assert phase_at(9, TOTAL, config) == "warmup"
    assert phase_at(10, TOTAL, config) == "stable"
    assert phase_at(70, TOTAL, config) == "annealing"


def test_scheduler_drives_the_optimizer_with_the_same_values():
    config = schedule("1-sqrt")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
    scheduler = make_scheduler(optimizer, TOTAL, config)
    seen = []
    for _ in range(TOTAL):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([PEAK * f for f in lr_factors(TOTAL, config)])


def test_empty_phases_and_rounding():
    assert phase_steps(7, schedule("linear", warmup=0.0, stable=1.0, annealing=0.0)) == (0, 7, 0)
    assert wsa_lr(0, 7, schedule("linear", warmup=0.0, stable=1.0, annealing=0.0)) == pytest.approx(PEAK)
    assert phase_steps(10, schedule("linear", warmup=0.25, stable=0.5, annealing=0.25)) == (2, 5, 3)
    only_annealing = schedule("cosine", warmup=0.0, stable=0.0, annealing=1.0)
    assert wsa_lr(0, 10, only_annealing) == pytest.approx(PEAK)


def test_mixture_follows_the_phase():
    config = schedule("cosine")
    config.mixture.warmup = config.mixture.stable = {"domain": 0.45, "mixed": 0.45, "catalog": 0.1}
    config.mixture.annealing = {"mixed": 0.9, "catalog": 0.1}
    assert mixture_at(0, TOTAL, config) == {"domain": 0.45, "mixed": 0.45, "catalog": 0.1}
    assert mixture_at(75, TOTAL, config) == {"mixed": 0.9, "catalog": 0.1}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["schedule.warmup=0.5", "schedule.stable=0.5", "schedule.annealing=0.5"], "sum to 1"),
        (["schedule.warmup=-0.1", "schedule.stable=0.8", "schedule.annealing=0.3"], ">= 0"),
        (["schedule.shape=step"], "schedule.shape"),
        (["schedule.shape=exponential", "schedule.min_lr_ratio=0"], "min_lr_ratio > 0"),
        (["schedule.mixture.annealing={mixed: 0.5}"], "sum to 1"),
        (["schedule.min_lr_ratio=1.5"], "min_lr_ratio"),
    ],
)
def test_invalid_settings_are_rejected(overrides, message):
    with pytest.raises(CPRecError, match=message):
        load_config(TrainConfig, None, ["data_dir=d", "output_dir=o", *overrides])
