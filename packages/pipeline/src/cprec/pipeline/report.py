"""The run report: does continual pre-training help, on this world? One page, from stage outputs.

It adds to the evaluator's per-dataset tables what the paper's questions need: the paired
comparisons of CPRec against the base model, the baselines and each ablation, a plain verdict per
dataset, and the pre-training curves (LR schedule and losses of every training run).
"""

from __future__ import annotations

import datetime
import io
import json

import numpy as np
import pyarrow.parquet as pq

from cprec.core import storage
from cprec.evaluator.results import RESULTS_FILE, DatasetResult, MethodKey, Results
from cprec.pipeline import profile
from cprec.pipeline.recipe import BASE_NAME, CPREC_NAME

HEADLINE = "ndcg@10"
REPORT = "report.md"
BASELINE_KINDS = ("sasrec", "popularity", "content")


def comparisons(dataset: DatasetResult) -> list[tuple[str, str, str]]:
    """(question, CPRec side's label, other side's label) of the pairs that ran on `dataset`: CPRec
    against the base model and the baselines, and against every other pre-trained model (the
    ablations), zero-shot and after fine-tuning."""
    cprec, cprec_sft = MethodKey(CPREC_NAME), MethodKey(CPREC_NAME, fine_tuned=True)
    pairs = [
        ("CPT helps zero-shot", cprec, MethodKey(BASE_NAME)),
        ("CPT helps after fine-tuning", cprec_sft, MethodKey(BASE_NAME, fine_tuned=True)),
    ]
    for kind in BASELINE_KINDS:
        baseline = dataset.method(MethodKey(kind=kind))
        if baseline:
            pairs.append((f"{cprec_sft} vs {baseline.label}", cprec_sft, baseline.key))
    for method in dataset.methods.values():
        if method.is_baseline or method.base in (CPREC_NAME, BASE_NAME):
            continue
        if method.fine_tuned:
            pairs.append((f"ablation after SFT: {method.base}", cprec_sft, method.key))
        else:
            pairs.append((f"ablation: {method.base}", cprec, method.key))
    found = [(question, dataset.method(a), dataset.method(b)) for question, a, b in pairs]
    return [(question, a.label, b.label) for question, a, b in found if a and b]


def compare(eval_dir: str, dataset: str, a: str, b: str, metric: str, test: str) -> dict:
    """Paired comparison of methods a and b on the test split: means, difference, p-value."""
    from cprec.evaluator.metrics import paired_pvalue

    fs, path = storage.filesystem(storage.join(eval_dir, "per_user", f"{dataset}.parquet"))
    table = pq.read_table(path, filesystem=fs, columns=["method", "split", "user_id", metric]).to_pandas()
    test_rows = table[table["split"] == "test"]
    wide = test_rows.pivot(index="user_id", columns="method", values=metric)
    x, y = wide[a].to_numpy(dtype=float), wide[b].to_numpy(dtype=float)
    return {"a": float(np.mean(x)), "b": float(np.mean(y)), "p": paired_pvalue(x, y, test)}


def verdict(row: dict, alpha: float) -> str:
    if row["a"] > row["b"]:
        return f"better (p={row['p']:.3g})" if row["p"] < alpha else f"higher, not significant (p={row['p']:.3g})"
    if row["a"] < row["b"]:
        return f"WORSE (p={row['p']:.3g})" if row["p"] < alpha else f"lower, not significant (p={row['p']:.3g})"
    return "equal"


def write_run_report(
    root: str,
    preset: str,
    manifest: dict,
    eval_dir: str,
    training_dirs: dict[str, str],
    world: str,
    profile_dir: str,
) -> str:
    results = Results.load(storage.join(eval_dir, RESULTS_FILE))
    alpha, test = results.protocol.alpha, results.protocol.test
    eval_rel = eval_dir.rsplit("/", 1)[-1]
    lines = [
        f"# CPRec run report — preset `{preset}`",
        "",
        f"Generated {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}. "
        f"Protocol: {results.protocol.label}; earlier items masked: {results.protocol.mask_history}. "
        f"Comparisons are paired {test} tests over the same test users (significance at p < {alpha}).",
        "",
        f"World: {world}. Its profile (docs/world.md says what each column means and what real logs show):",
        "",
        profile.markdown(storage.read_json(storage.join(profile_dir, profile.PROFILE_FILE))),
        "## Does continual pre-training help?",
        "",
    ]
    summary = {}
    for dataset, entry in results.datasets.items():
        rows = []
        for question, a, b in comparisons(entry):
            row = compare(eval_dir, dataset, a, b, HEADLINE, test)
            summary.setdefault(question, []).append((dataset, row))
            rows.append(
                f"| {question} | {a} {row['a']:.4f} | {b} {row['b']:.4f} | {row['a'] - row['b']:+.4f} | "
                f"{verdict(row, alpha)} |"
            )
        lines += [
            f"### {dataset} ({entry.platform}, {entry.users_evaluated} test users)",
            "",
            f"| question | CPRec side ({HEADLINE.upper()}) | other side | difference | verdict |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    lines += ["### In one line each", ""]
    for question, rows in summary.items():
        wins = [d for d, r in rows if r["a"] > r["b"]]
        significant = [d for d, r in rows if r["a"] > r["b"] and r["p"] < alpha]
        losses = [d for d, r in rows if r["a"] < r["b"]]
        sentence = (
            f"- **{question}**: CPRec ahead on {len(wins)} of {len(rows)} datasets ({len(significant)} significant)"
        )
        if losses:
            sentence += f"; NOT ahead on {', '.join(losses)}"
        lines.append(sentence + ".")
    lines.append("")
    lines += _training_section(root, training_dirs)
    lines += [
        "## Downstream results, every method",
        "",
        f"The evaluator's full report: [{eval_rel}/report.md]({eval_rel}/report.md). Its tables follow.",
        "",
    ]
    fs_r, eval_report = storage.filesystem(storage.join(eval_dir, "report.md"))
    with fs_r.open_input_stream(eval_report) as stream:
        body = stream.read().decode()
    # Shift the evaluator's headings one level down and point its charts at its own directory.
    for line in body.splitlines():
        if line.startswith("#"):
            line = "#" + line
        lines.append(line.replace("](test_", f"]({eval_rel}/test_"))
    lines += ["", "## Stages", "", "| stage | output | reused | seconds |", "| --- | --- | --- | --- |"]
    for name, stage in manifest.items():
        lines.append(f"| {name} | {stage['path'].rsplit('/', 1)[-1]} | {stage['reused']} | {stage['seconds']} |")
    report = storage.join(root, REPORT)
    fs_out, out_path = storage.filesystem(report)
    with fs_out.open_output_stream(out_path) as stream:
        stream.write(("\n".join(lines) + "\n").encode())
    return report


def _training_section(root: str, training_dirs: dict[str, str]) -> list[str]:
    curves = {name: _read_metrics(path) for name, path in training_dirs.items()}
    curves = {name: records for name, records in curves.items() if records}
    if not curves:
        return []
    _plot_curves(curves, root)
    lines = [
        "## Pre-training",
        "",
        "![learning-rate schedules](lr_schedules.png)",
        "",
        "![training and validation loss](loss_curves.png)",
        "",
        "Real tokens: non-padding tokens trained on (every step trains on the same number of packed",
        "blocks; documents of different kinds pad differently), the measure for equal-token comparisons.",
        "",
        "| run | steps | real tokens | first loss | last loss | last validation loss |",
        "| --- | --- | ---: | --- | --- | --- |",
    ]
    for name, records in curves.items():
        last = records[-1]
        valid = [r["val_loss"] for r in records if r.get("val_loss") is not None]
        tokens = f"{last['tokens_seen']:,}" if "tokens_seen" in last else "–"
        lines.append(
            f"| {name} | {last['step']} | {tokens} | {records[0]['loss']:.3f} | {last['loss']:.3f} | "
            + (f"{valid[-1]:.3f} |" if valid else "– |")
        )
    return [*lines, ""]


def _read_metrics(stage_dir: str) -> list[dict]:
    uri = storage.join(stage_dir, "metrics.jsonl")
    if not storage.exists(uri):
        return []
    fs, path = storage.filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]


def _plot_curves(curves: dict[str, list[dict]], root: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, records in curves.items():
        ax.plot([r["step"] for r in records], [r["lr"] for r in records], label=name)
    ax.set(xlabel="step", ylabel="learning rate", title="Learning-rate schedules")
    _legend_outside(ax)
    fig.tight_layout()
    _save(plt, fig, storage.join(root, "lr_schedules.png"))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for index, (name, records) in enumerate(curves.items()):
        color = f"C{index}"
        ax.plot([r["step"] for r in records], [r["loss"] for r in records], color=color, label=f"{name} train")
        valid = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
        if valid:
            ax.plot(*zip(*valid), "o--", color=color, label=f"{name} valid")
    ax.set(xlabel="step", ylabel="loss", title="Training and validation loss")
    _legend_outside(ax)
    fig.tight_layout()
    _save(plt, fig, storage.join(root, "loss_curves.png"))


def _legend_outside(ax) -> None:
    """Right of the axes, where it cannot hide a curve."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _save(plt, fig, uri: str) -> None:
    """The figure as a PNG at `uri`, local or on object storage."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    fs, path = storage.filesystem(uri)
    with fs.open_output_stream(path) as stream:
        stream.write(buffer.getvalue())
