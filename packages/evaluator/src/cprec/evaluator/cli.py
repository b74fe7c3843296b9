"""`cprec eval`: evaluate methods on the downstream datasets; `cprec eval report`: re-render the report.

Cheap imports only: torch, Ray and transformers load inside the handlers.
"""

from __future__ import annotations

import argparse
from typing import Any

from cprec.core.cli import add_config_command
from cprec.core.errors import CPRecError
from cprec.evaluator.config import EvalConfig

EXAMPLE = (
    "cprec eval world=runs/world/world.json "
    "'methods=[{kind: popularity}, {kind: content}, {kind: sasrec}, {kind: llm, model: runs/cpt/model}]'\n"
    "  cprec eval ... 'methods=[{kind: llm, name: CPRec + SFT, fine_tuned: true, "
    "models: {Pets: runs/sft/Pets/model, Online_Retail: runs/sft/Online_Retail/model}}]'\n"
    "  cprec eval report out_dir=runs/eval   # re-render report.md and charts from results.json"
)


def register(subparsers: Any) -> None:
    parser = add_config_command(
        subparsers,
        "eval",
        EvalConfig,
        _evaluate,
        help="score recommenders on the downstream datasets (full-ranking HR/NDCG/MRR, report)",
        description=(
            "Prepares the downstream splits (leave-one-out by time; a dataset's split_dir is read as is), fits "
            "the baselines and scores every method, writes results.json, per-user metrics, report.md and charts "
            "to out_dir. LLMs are scored as given: zero-shot, or already fine-tuned (a model per dataset in "
            "`models`; fine-tuning is a `cprec run` stage).\n"
            "`cprec eval report [--config FILE] [out_dir=DIR]` only re-renders the report from DIR/results.json."
        ),
        example=EXAMPLE,
    )
    evaluate_handler = parser.get_default("handler")

    def dispatch(args: argparse.Namespace) -> Any:
        if args.overrides and args.overrides[0] == "report":
            return _report(args.config, args.overrides[1:])
        if args.overrides and args.overrides[0] == "run":  # `cprec eval run ...` reads as `cprec eval ...`
            args.overrides = args.overrides[1:]
        return evaluate_handler(args)

    parser.set_defaults(handler=dispatch)


def _evaluate(config: EvalConfig, _args: argparse.Namespace) -> int:
    from cprec.evaluator.evaluate import evaluate

    results = evaluate(config)
    for name, dataset in results.datasets.items():
        if not dataset.methods:
            print(f"{name}: no method asked to run on it")
            continue
        best = dataset.significance[config.select_metric].best
        score = dataset.methods[best].test[config.select_metric]
        print(f"{name}: best test {config.select_metric} {score:.4f} by {best}")
    print(f"report: {config.out_dir}/report.md")
    return 0


def _report(config_path: str | None, overrides: list[str]) -> int:
    """Only `out_dir` matters here, so the rest of the eval config is neither needed nor validated."""
    import yaml

    from cprec.evaluator.report import render_report

    out_dir = EvalConfig.__dataclass_fields__["out_dir"].default
    if config_path:
        try:
            with open(config_path) as handle:
                out_dir = (yaml.safe_load(handle) or {}).get("out_dir", out_dir)
        except OSError as exc:
            raise CPRecError(f"config file not found: {config_path}") from exc
    for override in overrides:
        key, sep, value = override.partition("=")
        if key != "out_dir" or not sep:
            raise CPRecError(f"`cprec eval report` takes only out_dir=DIR, got {override!r}")
        out_dir = value
    print(f"report: {render_report(out_dir)}")
    return 0
