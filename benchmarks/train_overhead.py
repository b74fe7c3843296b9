"""What a training run costs outside its steps, alone and when it follows another run in the same
Ray Train worker group (trainer.fit_group).

Reads a finished `cprec run` root (its base model and its first SFT data stage) and fine-tunes the
base model on that data `--runs` times for `--steps` steps: first as one worker group of a single
run, then as one worker group of all the runs (fresh output dirs each time). The marginal wall time
of a run that follows another in the group, minus its steps, is its fixed cost; each run's own
train.json says where the seconds inside the workers went. Also tabulates every training stage of
the run root from its train.json.

    python benchmarks/train_overhead.py --run runs/default --runs 5 --steps 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from cprec.core.config import layered
from cprec.core.raytools import init_ray
from cprec.pipeline import recipe
from cprec.trainer.fit import fit_group

PARTS = ("set_up", "restore", "data", "steps", "validate", "save", "export")


def stage_table(run: Path) -> list[str]:
    """One row per training stage of the run: its parts' seconds from train.json."""
    stages = json.loads((run / "run.json").read_text())["stages"]
    lines = ["| stage | steps | " + " | ".join(PARTS) + " | outside steps |", "|---" * (len(PARTS) + 3) + "|"]
    for name, stage in stages.items():
        record_file = Path(stage["path"]) / "train.json"
        if not record_file.exists():
            continue
        seconds = json.loads(record_file.read_text())["seconds"]
        outside = sum(v for k, v in seconds.items() if k != "steps")
        cells = [f"{seconds.get(p, 0.0):.2f}" for p in PARTS]
        steps = json.loads(record_file.read_text())["steps_trained"]
        lines.append(f"| {name} | {steps} | " + " | ".join(cells) + f" | {outside:.2f} |")
    return lines


def fine_tunings(run: Path, steps: int, count: int, out: Path) -> list:
    """`count` fine-tuning configs of the run's base model on its first SFT data, `steps` steps each."""
    stages = json.loads((run / "run.json").read_text())["stages"]
    data = next(Path(s["path"]) / "data" for name, s in stages.items() if name.startswith("sft-data-"))
    base = Path(stages["base"]["path"]) / "model"
    sft_stage = next(s for name, s in stages.items() if name.startswith("sft-") and not name.startswith("sft-data-"))
    section = json.loads((Path(sft_stage["path"]) / "_STAGE.json").read_text())["config"]
    for key in ("data_dir", "output_dir", "model", "checkpoint"):
        section.pop(key, None)
    section = layered(section, {"steps": steps, "eval_every": 0, "log_every": steps})
    return [
        recipe.train_config(section, str(data), str(base), str(out / f"run-{i}"), f"overhead-{i}") for i in range(count)
    ]


def timed_group(configs: list) -> float:
    started = time.perf_counter()
    fit_group(configs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished `cprec run` root")
    parser.add_argument("--runs", type=int, default=5, help="fine-tunings in the shared worker group")
    parser.add_argument("--steps", type=int, default=2, help="steps of each fine-tuning")
    args = parser.parse_args()

    print("\n".join(stage_table(args.run)))
    work = Path(tempfile.mkdtemp(prefix="cprec-overhead-"))
    init_ray()  # started before the clock: a `cprec run` starts Ray once for all its stages
    try:
        alone = timed_group(fine_tunings(args.run, args.steps, 1, work / "alone"))
        group_configs = fine_tunings(args.run, args.steps, args.runs, work / "group")
        grouped = timed_group(group_configs)
        records = [json.loads((Path(c.output_dir) / "train.json").read_text())["seconds"] for c in group_configs]
        followers = records[1:]
        marginal = (grouped - alone) / (args.runs - 1)
        steps = sum(r["steps"] for r in followers) / len(followers)
        print()
        print(f"one run alone (its own worker group): {alone:.1f} s")
        print(f"{args.runs} runs in one worker group: {grouped:.1f} s")
        print(f"each following run: {marginal:.1f} s wall, of which {steps:.2f} s steps: fixed cost {marginal - steps:.1f} s")
        for part in PARTS:
            mean = sum(r.get(part, 0.0) for r in followers) / len(followers)
            print(f"  {part:>9}: {mean:.2f} s (mean of the following runs, inside the workers)")
        result = {"alone_s": alone, "group_s": grouped, "runs": args.runs, "steps": args.steps,
                  "marginal_s": marginal, "fixed_s": marginal - steps, "parts": followers}  # fmt: skip
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
