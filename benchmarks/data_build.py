"""Benchmark of `cprec data build` against a single-process DuckDB script producing the same sequences.

For each layout (Amazon Reviews 2018 and/or 2023) and size it generates a world of that many review
lines with the statistics of the real dumps (`amazon_world.py`: heavy-tailed users and items,
duplicates, items without metadata or title, malformed lines, 7 unequal domains, gzip JSON lines),
then runs, each as its own process with its process tree's memory (PSS) sampled every 0.5 s:
  - `cprec data build stop_after=sequences` (the Ray pipeline, to the stage the reference reaches),
  - `data_build_reference.py` (DuckDB only) — and checks both wrote the same sequences,
  - `cprec data build` to the end (tokens), for tokens/s.
It writes WORK/results.json (machine, versions, load averages, every measurement) and prints a
Markdown table last. Generated worlds are kept in WORK and reused (their `_DONE` marker).

    python benchmarks/data_build.py --events 1000000 10000000 --layout amazon2018 amazon2023
    python benchmarks/data_build.py --events 1000000 --layout amazon2018 --only ray --skip-full  # profiling
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import amazon_world  # noqa: E402  (a sibling script, not a package)

STEP = re.compile(r"cprec data build: (.+) took ([0-9.]+) s")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def measured(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time and peak summed PSS of the command's whole process tree (Ray workers included)."""
    load_start = _load()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            total = 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in tree:
                try:
                    total += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak = max(peak, total)
            stop.wait(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    stop.set()
    thread.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {
        "seconds": round(seconds, 2),
        "peak_gib": round(peak / 2**30, 2),
        "load_average": [load_start, _load()],
        "steps_s": {name: float(s) for name, s in STEP.findall(err)},  # the build's own step timer
        "stdout": out.strip()[-500:],
    }


def same_sequences(build_dir: Path, reference: Path) -> bool:
    """Equal multisets of rows, by count and order-independent sums of row digests (streams; no join)."""
    con = duckdb.connect(config={"threads": 2, "memory_limit": "2GB"})
    row = "concat_ws('|', user_id, kind, domain, item_ids::VARCHAR, timestamps::VARCHAR, text, split)"
    digest = f"SELECT count(*), sum(md5_number_lower({row})::HUGEINT), bit_xor(md5_number_upper({row})) FROM "
    a = con.sql(digest + f"read_parquet('{build_dir}/sequences/*.parquet')").fetchall()[0]
    b = con.sql(digest + f"read_parquet('{reference}')").fetchall()[0]
    return a == b and a[0] > 0


def run(layout: str, events: int, work: Path, args: argparse.Namespace) -> dict:
    src = work / f"src-{layout}-{events}"
    t0 = time.perf_counter()
    profile = amazon_world.generate(src, events, layout, seed=args.seed)
    result: dict = {
        "layout": layout,
        "events": events,
        "generate_seconds": round(time.perf_counter() - t0, 1),  # ~0 when the world was already there
        "world": {k: v for k, v in profile.items() if k != "domains"},
    }
    sources = f"sources=[{{format: {layout}, path: '{src}'}}]"
    common = [
        sys.executable,
        "-m",
        "cprec.data_prep",
        "build",
        sources,
        f"partitions={args.partitions}",
        "progress_bars=false",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    tag = f"{layout}-{events}"
    seq_out, full_out, ref_out = work / f"seq-{tag}", work / f"full-{tag}", work / f"reference-{tag}.parquet"
    for path in (seq_out, full_out):
        shutil.rmtree(path, ignore_errors=True)

    if args.only in ("", "ray"):
        result["ray_sequences"] = measured([*common, f"out_dir={seq_out}", "stop_after=sequences"], env)
        stats = json.loads((seq_out / "stats.json").read_text())
        result["kept_events"] = stats["kept"]["events"]
        result["rejected_records"] = stats["records"]["rejected"]
    if args.only in ("", "reference"):
        result["duckdb_reference"] = measured(
            [
                sys.executable,
                str(HERE / "data_build_reference.py"),
                str(src),
                str(ref_out),
                "--format",
                layout,
                "--threads",
                str(args.reference_threads),
            ],
            env,
        )
        result["duckdb_reference"]["counts"] = json.loads(result["duckdb_reference"].pop("stdout"))
    if "ray_sequences" in result and "duckdb_reference" in result:
        result["sequences_equal"] = same_sequences(seq_out, ref_out)
        result["ray_over_duckdb"] = round(result["ray_sequences"]["seconds"] / result["duckdb_reference"]["seconds"], 2)
    if args.only in ("", "ray") and not args.skip_full:
        result["ray_full"] = measured([*common, f"out_dir={full_out}"], env)
        stats = json.loads((full_out / "stats.json").read_text())
        counts = [c for split in stats["tokens"].values() for c in split.values()]
        result["tokens_written"] = sum(c["tokens"] for c in counts)
        slots = sum(c["blocks"] for c in counts) * stats["config"]["tokens"]["block_len"]
        result["padding_share"] = round(sum(c["padding"] for c in counts) / slots, 3)
        result["ray_full"]["tokens_per_s"] = round(result["tokens_written"] / result["ray_full"]["seconds"])
    for name in ("ray_sequences", "duckdb_reference", "ray_full"):
        if name in result:
            result[name]["events_per_s"] = round(events / result[name]["seconds"])
    for path in (seq_out, full_out):
        shutil.rmtree(path, ignore_errors=True)
    ref_out.unlink(missing_ok=True)
    return result


def _versions() -> dict:
    import numpy
    import pyarrow
    import ray

    return {
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "ray": ray.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cell(r: dict, name: str) -> str:
    if name not in r:
        return "—"
    m = r[name]
    return f"{m['seconds']} s ({m['events_per_s']:,} ev/s)"


def table(results: list[dict]) -> str:
    """One line per (layout, events); memory growth against the smallest size of the same layout."""
    smallest: dict[str, dict] = {}
    for r in sorted(results, key=lambda r: r["events"]):
        smallest.setdefault(r["layout"], r)
    names = ("ray_sequences", "duckdb_reference", "ray_full")
    lines = [
        "| layout | events | gzip MB | Ray to sequences | DuckDB-only | Ray / DuckDB | same sequences | Ray full build "
        "| tokens/s | peak GiB (Ray seq / DuckDB / Ray full) | peak memory vs smallest size |",
        "| --- | ---: | ---: | --- | --- | ---: | --- | --- | ---: | --- | --- |",
    ]
    for r in results:
        peaks = " / ".join(str(r[n]["peak_gib"]) if n in r else "—" for n in names)
        base = smallest[r["layout"]]
        growth = "—"
        if base is not r:
            growth = f"x{r['events'] / base['events']:g} events: " + " / ".join(
                f"{r[n]['peak_gib'] / base[n]['peak_gib']:.2f}x"
                if n in r and n in base and base[n]["peak_gib"]
                else "—"
                for n in names
            )
        lines.append(
            f"| {r['layout']} | {r['events']:,} | {r['world']['gzip_bytes'] / 1e6:,.0f} | {_cell(r, 'ray_sequences')} "
            f"| {_cell(r, 'duckdb_reference')} | {str(r['ray_over_duckdb']) + 'x' if 'ray_over_duckdb' in r else '—'} "
            f"| {r.get('sequences_equal', '—')} | {_cell(r, 'ray_full')} "
            f"| {format(r['ray_full']['tokens_per_s'], ',') if 'ray_full' in r else '—'} | {peaks} | {growth} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--layout", nargs="+", choices=amazon_world.LAYOUTS, default=list(amazon_world.LAYOUTS))
    parser.add_argument("--work", default="/tmp/cprec-bench")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="the generated world's seed")
    parser.add_argument("--reference-threads", type=int, default=2, help="DuckDB threads of the reference")
    parser.add_argument("--skip-full", action="store_true", help="skip the full Ray build (to tokens)")
    parser.add_argument(
        "--only", choices=["ray", "reference"], default="", help="run only the Ray builds or the reference"
    )
    parser.add_argument("--out", default="", help="results JSON (default: WORK/results.json)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = {
        "date": date.today().isoformat(),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        **_versions(),
    }
    out = Path(args.out or work / "results.json")
    results = []
    for events in args.events:
        for layout in args.layout:
            results.append(run(layout, events, work, args))
            print(json.dumps(results[-1]), flush=True)
            machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))  # after every run
    print(json.dumps(machine))
    print()
    print(table(results))


if __name__ == "__main__":
    main()
