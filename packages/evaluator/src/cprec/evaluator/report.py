"""The report: Markdown tables (one per dataset) and PNG charts, rendered from results.json alone.

`cprec eval report` calls `render_report` on a finished run, so the report can be regenerated (or
restyled) without recomputing anything.
"""

from __future__ import annotations

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.evaluator.metrics import metric_names

REPORT_FILE = "report.md"


def chart_metrics(results: dict) -> list[str]:
    """The selection metric (NDCG@10 by default) and its HR@K twin."""
    select = results["protocol"]["select_metric"]
    return [select, select.replace("ndcg@", "hr@")] if select.startswith("ndcg@") else [select]


def render_report(out_dir: str) -> str:
    """Re-renders report.md and the charts of `out_dir` from its results.json; returns the report path."""
    uri = storage.join(out_dir, "results.json")
    if not storage.exists(uri):
        raise CPRecError(f"no results.json in {out_dir}; run `cprec eval` first")
    return write_report(storage.read_json(uri), out_dir)


def write_report(results: dict, out_dir: str) -> str:
    fs, path = storage.filesystem(out_dir)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{REPORT_FILE}") as stream:
        stream.write(markdown(results).encode())
    for metric in chart_metrics(results):
        png = chart(results, metric)
        if png is not None:
            with fs.open_output_stream(f"{path}/{chart_name(metric)}") as stream:
                stream.write(png)
    return storage.join(out_dir, REPORT_FILE)


def chart_name(metric: str) -> str:
    return "test_" + metric.replace("@", "") + ".png"


def markdown(results: dict) -> str:
    protocol = results["protocol"]
    names = metric_names(protocol["ks"])
    alpha = protocol["alpha"]
    lines = [
        "# CPRec downstream evaluation",
        "",
        f"- Protocol: **{protocol['label']}**; the user's earlier items "
        + ("masked out" if protocol["mask_history"] else "not masked")
        + f"; ties resolved: {protocol['ties']}.",
        (
            "- Metrics on the test split (last item per user); each method's variant (the LLM score form) "
            f"chosen on validation {protocol['select_metric']}."
        ),
        (
            f"- **Bold**: best in the column. †: significantly below that best (paired {protocol['test']} test "
            f"over users, p < {alpha}). Intervals: 95% bootstrap over users ({protocol['bootstrap']} resamples)."
        ),
        "",
    ]
    for name, dataset in results["datasets"].items():
        stats = dataset["stats"]
        lines += [
            f"## {name} ({dataset['platform'] or 'platform ?'}, {dataset['domain']})",
            "",
            f"{dataset['users_evaluated']} users evaluated of {stats['users']}, {stats['items']} items, "
            f"{stats['events']} events. Protocol: {protocol['label']}."
            + (
                f" {dataset['users_without_enough_negatives']} users left out: fewer never-seen items than negatives."
                if dataset.get("users_without_enough_negatives")
                else ""
            ),
            "",
        ]
        if not dataset["methods"]:
            lines += ["No method was asked to run on this dataset.", ""]
            continue
        lines += [
            "| method | variant | "
            + " | ".join(
                n.upper() if n == "mrr" else n.replace("hr", "HR").replace("ndcg", "NDCG") for n in names
            )
            + " |",
            "| --- | --- | " + " | ".join("---:" for _ in names) + " |",
        ]
        significance = dataset["significance"]
        for label, method in dataset["methods"].items():
            cells = []
            for metric in names:
                text = f"{method['test'][metric]:.4f}"
                best = significance[metric]["best"]
                if label == best:
                    text = f"**{text}**"
                elif significance[metric]["p_values"].get(label, 1.0) < alpha:
                    text += " †"
                cells.append(text)
            lines.append(f"| {label} | {method['variant'] or '-'} | " + " | ".join(cells) + " |")
        select = protocol["select_metric"]
        lines += [
            "",
            f"| method | test {select} [95% CI] | p vs best | valid {select} | fit s | total s |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        best = significance[select]["best"]
        for label, method in dataset["methods"].items():
            low, high = method["test_ci"][select]
            p_value = "best" if label == best else f"{significance[select]['p_values'][label]:.3g}"
            lines.append(
                f"| {label} | {method['test'][select]:.4f} [{low:.4f}, {high:.4f}] | {p_value} | "
                f"{method['valid'][select]:.4f} | {method['seconds']['fit']} | {method['seconds']['total']} |"
            )
        forms = {label: m["variants"] for label, m in dataset["methods"].items() if len(m["variants"]) > 1}
        if forms:
            lines += ["", f"Score forms (valid {select} / test {select}):", ""]
            for label, variants in forms.items():
                parts = [
                    f"{v} {s['valid'][select]:.4f} / {s['test'][select]:.4f}" for v, s in variants.items()
                ]
                lines.append(f"- {label}: " + "; ".join(parts))
        lines.append("")
    lines += [f"Charts: {', '.join(chart_name(m) for m in chart_metrics(results))}.", ""]
    return "\n".join(lines)


def chart(results: dict, metric: str) -> bytes | None:
    """Grouped bars: datasets on the x axis, one bar per method, 95% CI as error bars."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = list(results["datasets"])
    if not datasets:
        return None
    labels = list(dict.fromkeys(label for d in datasets for label in results["datasets"][d]["methods"]))
    width = 0.8 / max(len(labels), 1)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(datasets) + 2), 4))
    for index, label in enumerate(labels):
        means, errors = [], [[], []]
        for name in datasets:
            method = results["datasets"][name]["methods"].get(label)
            mean = method["test"][metric] if method else np.nan
            low, high = method["test_ci"][metric] if method else (np.nan, np.nan)
            means.append(mean)
            errors[0].append(max(mean - low, 0) if method else 0)
            errors[1].append(max(high - mean, 0) if method else 0)
        positions = np.arange(len(datasets)) + (index - (len(labels) - 1) / 2) * width
        axes.bar(positions, means, width, yerr=errors, capsize=2, label=label)
    axes.set_xticks(np.arange(len(datasets)), datasets, rotation=20, ha="right")
    axes.set_ylabel(f"test {metric}")
    axes.set_title(f"{metric} per dataset ({results['protocol']['label']})", fontsize=9)
    axes.legend(fontsize=7, ncols=2)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()
