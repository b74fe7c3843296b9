"""The report: Markdown tables (one per dataset) and PNG charts, rendered from results.json alone.

`cprec eval report` calls `render_report` on a finished run, so the report can be regenerated (or
restyled) without recomputing anything. Every chart styles a method the same way (`method_styles`):
baselines grey and hatched, each pre-trained model its own hue, zero-shot light and fine-tuned dark.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.evaluator.metrics import metric_names
from cprec.evaluator.results import RESULTS_FILE, MethodResult, Results

REPORT_FILE = "report.md"
# Grouped bars up to this many (methods x datasets); beyond it one dot-plot panel per dataset.
MAX_BARS = 24
# Dot-plot panels per row of the figure.
PANELS_PER_ROW = 5


def chart_metrics(results: Results) -> list[str]:
    """The selection metric (NDCG@10 by default) and its HR@K twin."""
    select = results.protocol.select_metric
    return [select, select.replace("ndcg@", "hr@")] if select.startswith("ndcg@") else [select]


def render_report(out_dir: str) -> str:
    """Re-renders report.md and the charts of `out_dir` from its results.json; returns the report path."""
    uri = storage.join(out_dir, RESULTS_FILE)
    if not storage.exists(uri):
        raise CPRecError(f"no {RESULTS_FILE} in {out_dir}; run `cprec eval` first")
    return write_report(Results.load(uri), out_dir)


def write_report(results: Results, out_dir: str) -> str:
    storage.write_text(storage.join(out_dir, REPORT_FILE), markdown(results))
    styles = method_styles(results.methods())
    for metric in chart_metrics(results):
        png = chart(results, metric, styles)
        if png is not None:
            storage.write_bytes(storage.join(out_dir, chart_name(metric)), png)
    return storage.join(out_dir, REPORT_FILE)


def chart_name(metric: str) -> str:
    return "test_" + metric.replace("@", "") + ".png"


def markdown(results: Results) -> str:
    protocol = results.protocol
    names = metric_names(protocol.ks)
    alpha = protocol.alpha
    lines = [
        "# CPRec downstream evaluation",
        "",
        f"- Protocol: **{protocol.label}**; the user's earlier items "
        + ("masked out" if protocol.mask_history else "not masked")
        + f"; ties resolved: {protocol.ties}.",
        (
            "- Metrics on the test split (last item per user); each method's variant (the LLM score form) "
            f"chosen on validation {protocol.select_metric}."
        ),
        (
            f"- **Bold**: best in the column. †: significantly below that best (paired {protocol.test} test "
            f"over users, p < {alpha}). Intervals: 95% bootstrap over users ({protocol.bootstrap} resamples)."
        ),
        "",
    ]
    for name, dataset in results.datasets.items():
        stats = dataset.stats
        lines += [
            f"## {name} ({dataset.platform or 'platform ?'}, {dataset.domain})",
            "",
            f"{dataset.users_evaluated} users evaluated of {stats['users']}, {stats['items']} items, "
            f"{stats['events']} events. Protocol: {protocol.label}."
            + (
                f" {dataset.users_without_enough_negatives} users left out: fewer never-seen items than negatives."
                if dataset.users_without_enough_negatives
                else ""
            ),
            "",
        ]
        if not dataset.methods:
            lines += ["No method was asked to run on this dataset.", ""]
            continue
        lines += [
            "| method | variant | "
            + " | ".join(n.upper() if n == "mrr" else n.replace("hr", "HR").replace("ndcg", "NDCG") for n in names)
            + " |",
            "| --- | --- | " + " | ".join("---:" for _ in names) + " |",
        ]
        significance = dataset.significance
        for label, method in dataset.methods.items():
            cells = []
            for metric in names:
                text = f"{method.test[metric]:.4f}"
                if label == significance[metric].best:
                    text = f"**{text}**"
                elif significance[metric].p_value(label) < alpha:
                    text += " †"
                cells.append(text)
            lines.append(f"| {label} | {method.variant or '-'} | " + " | ".join(cells) + " |")
        select = protocol.select_metric
        lines += [
            "",
            f"| method | test {select} [95% CI] | p vs best | valid {select} | fit s | total s |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        best = significance[select].best
        for label, method in dataset.methods.items():
            low, high = method.test_ci[select]
            p_value = "best" if label == best else f"{significance[select].p_value(label):.3g}"
            lines.append(
                f"| {label} | {method.test[select]:.4f} [{low:.4f}, {high:.4f}] | {p_value} | "
                f"{method.valid[select]:.4f} | {method.seconds['fit']} | {method.seconds['total']} |"
            )
        forms = {label: m.variants for label, m in dataset.methods.items() if len(m.variants) > 1}
        if forms:
            lines += ["", f"Score forms (valid {select} / test {select}):", ""]
            for label, variants in forms.items():
                parts = [f"{v} {s['valid'][select]:.4f} / {s['test'][select]:.4f}" for v, s in variants.items()]
                lines.append(f"- {label}: " + "; ".join(parts))
        lines.append("")
    if any(dataset.methods for dataset in results.datasets.values()):
        lines += ["## Charts", ""]
        for metric in chart_metrics(results):
            lines += [f"![test {metric} per dataset and method]({chart_name(metric)})", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class MethodStyle:
    """How one method is drawn in every chart: `face` fills its bar or dot, `edge` outlines it (and
    draws its hatch and interval)."""

    face: str
    edge: str
    hatch: str
    marker: str


BASELINE_GREYS = ("#525252", "#969696", "#d0d0d0")
BASELINE_HATCHES = ("///", "...", "xxx", "\\\\\\", "+++", "ooo")
BASELINE_MARKERS = ("s", "D", "^", "v", "P", "X")
MODEL_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "p", "h", "<", ">", "*")
# Hatches of the models once every hue is taken: a further model reuses a hue, never a look.
MODEL_HATCHES = ("", "//", "..", "xx", "\\\\")


def model_hues() -> list[tuple[str, str]]:
    """(dark, light) pairs of one hue each: tab20's nine coloured pairs (its grey is the baselines'),
    then tab20b's five hue groups."""
    import matplotlib
    from matplotlib.colors import to_hex

    tab20 = [to_hex(c) for c in matplotlib.colormaps["tab20"].colors]
    tab20b = [to_hex(c) for c in matplotlib.colormaps["tab20b"].colors]
    grey = 7
    pairs = [(tab20[2 * i], tab20[2 * i + 1]) for i in range(10) if i != grey]
    return pairs + [(tab20b[4 * i], tab20b[4 * i + 2]) for i in range(5)]


def method_styles(methods: list[MethodResult]) -> dict[str, MethodStyle]:
    """label -> style, a different one for every method (up to six baselines and dozens of models).
    Baselines: greys, each its own hatch and marker. LLM methods: one hue and marker per pre-trained
    model (`base`), in order of appearance, zero-shot in the hue's light shade, fine-tuned in its dark
    shade. The styles depend only on `methods`, so every chart of a record draws a method alike."""
    hues = model_hues()
    bases = list(dict.fromkeys(m.base for m in methods if not m.is_baseline))
    styles = {}
    baselines = 0
    for method in methods:
        if method.is_baseline:
            index = baselines
            baselines += 1
            grey = BASELINE_GREYS[index % len(BASELINE_GREYS)]
            hatch = BASELINE_HATCHES[index % len(BASELINE_HATCHES)]
            marker = BASELINE_MARKERS[index % len(BASELINE_MARKERS)]
            styles[method.label] = MethodStyle(grey, "#252525", hatch, marker)
            continue
        index = bases.index(method.base)
        dark, light = hues[index % len(hues)]
        hatch = MODEL_HATCHES[(index // len(hues)) % len(MODEL_HATCHES)]
        marker = MODEL_MARKERS[index % len(MODEL_MARKERS)]
        styles[method.label] = MethodStyle(dark if method.fine_tuned else light, dark, hatch, marker)
    return styles


def chart(results: Results, metric: str, styles: dict[str, MethodStyle]) -> bytes | None:
    """Test `metric` of every method on every dataset with its 95% interval: grouped bars while they
    stay readable, else one dot-plot panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [m.label for m in results.methods()]
    if not labels:
        return None
    if len(labels) * len(results.datasets) <= MAX_BARS:
        figure = bar_chart(plt, results, metric, labels, styles)
    else:
        figure = dot_chart(plt, results, metric, labels, styles)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def interval(results: Results, dataset: str, label: str, metric: str) -> tuple[float, float, float] | None:
    """(mean, below, above) of `label` on `dataset`, the interval as distances from the mean; None
    where the method did not run."""
    method = results.datasets[dataset].methods.get(label)
    if method is None:
        return None
    mean = method.test[metric]
    low, high = method.test_ci[metric]
    return mean, max(mean - low, 0.0), max(high - mean, 0.0)


def bar_chart(plt, results: Results, metric: str, labels: list[str], styles: dict[str, MethodStyle]):
    """Datasets on the x axis, one bar per method, the legend right of the axes."""
    import numpy as np

    datasets = list(results.datasets)
    width = 0.8 / len(labels)
    figure, axes = plt.subplots(figsize=(max(4.5, 0.35 * len(labels) * len(datasets) + 1.5), 3.8))
    for index, label in enumerate(labels):
        style = styles[label]
        points = [interval(results, name, label, metric) for name in datasets]
        means = [p[0] if p else np.nan for p in points]
        errors = [[p[1] if p else 0.0 for p in points], [p[2] if p else 0.0 for p in points]]
        positions = np.arange(len(datasets)) + (index - (len(labels) - 1) / 2) * width
        axes.bar(
            positions,
            means,
            width,
            yerr=errors,
            label=label,
            color=style.face,
            edgecolor=style.edge,
            hatch=style.hatch,
            linewidth=0.8,
            error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#252525"},
        )
    axes.set_xticks(np.arange(len(datasets)), datasets, rotation=20 if len(datasets) > 2 else 0, ha="right")
    axes.set_ylabel(f"test {metric}")
    axes.set_ylim(bottom=0)
    axes.set_title(f"{metric} per dataset ({results.protocol.label})", fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return figure


def dot_chart(plt, results: Results, metric: str, labels: list[str], styles: dict[str, MethodStyle]):
    """One panel per dataset, methods as rows (named on the left), the mean as a dot and the 95%
    interval as a line; all panels on one x scale."""
    datasets = list(results.datasets)
    columns = min(len(datasets), PANELS_PER_ROW)
    rows = -(-len(datasets) // columns)
    figure, grid = plt.subplots(
        rows,
        columns,
        sharex=True,
        sharey=True,
        squeeze=False,
        figsize=(1.6 + 2.3 * columns, rows * (0.26 * len(labels) + 0.9)),
    )
    for panel, axes in enumerate(grid.flat):
        if panel >= len(datasets):
            axes.set_visible(False)
            continue
        name = datasets[panel]
        for row, label in enumerate(labels):
            point = interval(results, name, label, metric)
            if point is None:  # said, so that an empty row is not read as a score of zero
                axes.text(
                    0.02, row, "not run", transform=axes.get_yaxis_transform(), fontsize=7, color="#999999", va="center"
                )
                continue
            mean, below, above = point
            style = styles[label]
            axes.errorbar(
                mean,
                row,
                xerr=[[below], [above]],
                fmt=style.marker,
                markersize=6,
                color=style.edge,
                markerfacecolor=style.face,
                markeredgecolor=style.edge,
                markeredgewidth=1.0,
                elinewidth=1.2,
            )
        axes.set_title(f"{name.replace('_', ' ')}\n{results.datasets[name].platform}", fontsize=9)
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.8)
        axes.grid(axis="x", color="#f0f0f0", linewidth=0.6)
        axes.set_axisbelow(True)
        axes.spines[["top", "right"]].set_visible(False)
        axes.tick_params(axis="y", length=0, labelsize=8)
        if panel // columns == rows - 1 or panel + columns >= len(datasets):
            axes.set_xlabel(f"test {metric}", fontsize=8)
            axes.tick_params(axis="x", labelbottom=True)
    first = grid.flat[0]
    first.set_yticks(range(len(labels)), labels)
    first.set_ylim(len(labels) - 0.5, -0.5)  # the first method at the top
    figure.suptitle(
        f"test {metric} per dataset and method; dots: means, lines: 95% bootstrap intervals ({results.protocol.label})",
        fontsize=9,
    )
    figure.tight_layout()
    return figure
