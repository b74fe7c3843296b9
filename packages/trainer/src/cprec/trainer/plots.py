"""PNG plots: the WSA schedule with its mixture, and the loss curve of a run."""

from __future__ import annotations

import io
import json
from pathlib import Path

from cprec.core import storage
from cprec.trainer.config import PHASES, ScheduleConfig
from cprec.trainer.schedule import lr_factors, phase_steps


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_schedule(config: ScheduleConfig, total: int, out: str | Path) -> Path:
    """LR against steps with the phase boundaries, and each phase's kind shares underneath."""
    plt = _pyplot()
    warmup, stable, _ = phase_steps(total, config)
    lrs = [config.peak_lr * f for f in lr_factors(total, config)]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    top.plot(range(total), lrs, color="tab:blue")
    for bound in (warmup, warmup + stable):
        top.axvline(bound, color="grey", lw=0.8, ls="--")
    top.set_ylabel("learning rate")
    top.set_title(
        f"WSA: warmup {config.warmup:g} / stable {config.stable:g} / annealing {config.annealing:g}, "
        f"{config.shape}, min_lr_ratio {config.min_lr_ratio:g}"
    )
    kinds = sorted({k for p in PHASES for k in config.mixture.for_phase(p)})
    spans = dict(zip(PHASES, [(0, warmup), (warmup, warmup + stable), (warmup + stable, total)]))
    colors = dict(zip(kinds, ["tab:orange", "tab:green", "tab:purple", "tab:red"]))
    for phase, (start, end) in spans.items():
        bottom_share = 0.0
        shares = config.mixture.for_phase(phase)
        if not shares:
            bottom.fill_between(
                [start, end], 0, 1, color="lightgrey", hatch="//", label="in proportion to rows"
            )
        for kind in kinds:
            share = shares.get(kind, 0.0)
            bottom.fill_between(
                [start, end], bottom_share, bottom_share + share, color=colors[kind], label=kind
            )
            bottom_share += share
    handles, labels = bottom.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per kind, not per phase
    bottom.legend(unique.values(), unique.keys(), loc="upper left", fontsize=8, ncols=len(unique))
    bottom.set_ylabel("mixture")
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("step")
    fig.tight_layout()
    return _save(plt, fig, str(out))


def plot_loss(metrics_file: str | Path, out: str | Path) -> str:
    """Training loss per step and validation loss where measured, from metrics.jsonl (local or remote)."""
    plt = _pyplot()
    records = [json.loads(line) for line in storage.read_text(str(metrics_file)).splitlines() if line.strip()]
    fig, axis = plt.subplots(figsize=(7, 4))
    axis.plot([r["step"] for r in records], [r["loss"] for r in records], label="train loss", lw=1)
    valid = [r for r in records if r.get("val_loss") is not None]
    if valid:
        axis.plot([r["step"] for r in valid], [r["val_loss"] for r in valid], "o-", label="validation loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (nats/token)")
    axis.legend()
    fig.tight_layout()
    return _save(plt, fig, str(out))


def _save(plt, fig, uri: str) -> str:
    """The figure as a PNG at `uri`, local or on object storage."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    storage.write_bytes(uri, buffer.getvalue())
    return uri
