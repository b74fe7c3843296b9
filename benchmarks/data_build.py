"""Benchmark of `cprec data build` against a single-process DuckDB script producing the same sequences.

For each size it generates an Amazon-2023-layout world of that many events (7 domains), then runs,
each as its own process with its process tree's memory sampled:
  - `cprec data build stop_after=sequences` (the Ray pipeline, to the stage the reference reaches),
  - `benchmarks/data_build_reference.py` (DuckDB only) — and checks both wrote the same sequences,
  - `cprec data build` to the end (tokens), for tokens/s.
It prints a Markdown table (events/s, tokens/s written, peak memory) and writes results JSON.

    python benchmarks/data_build.py --events 1000000 10000000 --work /tmp/cprec-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import psutil

DOMAINS = ["Books", "Electronics", "Home_and_Kitchen", "Sports_and_Outdoors", "Toys_and_Games", "Beauty", "Pet_Supplies"]
EVENTS_PER_USER = 40
ITEMS_PER_DOMAIN_PER_MILLION = 3000
HERE = Path(__file__).resolve().parent


def generate(src: Path, events: int) -> None:
    """Clean synthetic files: users of ~40 events over 2-4 domains, mild popularity skew."""
    if (src / "_DONE").exists():
        return
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    users = max(1, events // EVENTS_PER_USER)
    items = max(50, ITEMS_PER_DOMAIN_PER_MILLION * events // 1_000_000)
    con = duckdb.connect(config={"threads": 2})
    # hash() is stable within a DuckDB version, which is all a benchmark input needs
    con.execute(
        f"""
        CREATE TABLE ev AS
        SELECT 'U' || lpad((i // {EVENTS_PER_USER})::VARCHAR, 9, '0') AS user_id,
               ((i // {EVENTS_PER_USER}) + (hash(i, 1) % 3)) % {len(DOMAINS)} AS d,
               floor({items} * pow((hash(i, 2) % 1000003) / 1000003.0, 1.3))::BIGINT AS item,
               1500000000000 + (i % {EVENTS_PER_USER}) * 86400000 + (hash(i // {EVENTS_PER_USER}) % 1000000) * 1000 AS ts
        FROM range({users * EVENTS_PER_USER}) t(i)
        """
    )
    words = ["Crimson", "Navy", "Sage", "Ivory", "Vintage", "Modern", "Linen", "Walnut", "Floral", "Alpine"]
    for d, domain in enumerate(DOMAINS):
        prefix = domain[:3].upper()
        con.execute(
            f"""
            COPY (SELECT user_id, '{prefix}' || lpad(item::VARCHAR, 7, '0') AS parent_asin, 5.0 AS rating,
                         ts AS timestamp, 'review' AS title, 'fine' AS text
                  FROM ev WHERE d = {d} ORDER BY user_id, ts)
            TO '{src}/{domain}.jsonl' (FORMAT JSON)
            """
        )
        con.execute(
            f"""
            COPY (SELECT '{prefix}' || lpad(i::VARCHAR, 7, '0') AS parent_asin,
                         {words}[1 + i % 10] || ' ' || {words}[1 + (i // 10) % 10] || ' {domain.split('_')[0].lower()} '
                           || i::VARCHAR AS title,
                         'Brand ' || (i % 97)::VARCHAR AS store, ['{domain}', 'Leaf ' || (i % 13)::VARCHAR] AS categories,
                         '{domain}' AS main_category
                  FROM range({items}) t(i))
            TO '{src}/meta_{domain}.jsonl' (FORMAT JSON)
            """
        )
    (src / "_DONE").write_text("")


def measured(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time and peak summed PSS of the command's whole process tree (Ray workers included)."""
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
    return {"seconds": round(seconds, 2), "peak_gib": round(peak / 2**30, 2), "stdout": out.strip()[-500:]}


def same_sequences(build_dir: Path, reference: Path) -> bool:
    """Equal multisets of rows, by count and order-independent sums of row digests (streams; no join)."""
    con = duckdb.connect(config={"threads": 2, "memory_limit": "2GB"})
    row = "concat_ws('|', user_id, kind, domain, item_ids::VARCHAR, timestamps::VARCHAR, text, split)"
    digest = (
        f"SELECT count(*), sum(md5_number_lower({row})::HUGEINT), bit_xor(md5_number_upper({row})) FROM "
    )
    a = con.sql(digest + f"read_parquet('{build_dir}/sequences/*.parquet')").fetchall()[0]
    b = con.sql(digest + f"read_parquet('{reference}')").fetchall()[0]
    return a == b and a[0] > 0


def run(events: int, work: Path, partitions: int) -> dict:
    src = work / f"src-{events}"
    t0 = time.perf_counter()
    generate(src, events)
    gen_seconds = time.perf_counter() - t0
    sources = f"sources=[{{format: amazon2023, path: '{src}'}}]"
    common = [sys.executable, "-m", "cprec.data_prep", "build", sources, f"partitions={partitions}", "progress_bars=false"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    result: dict = {"events": events, "generate_seconds": round(gen_seconds, 1)}

    seq_out = work / f"seq-{events}"
    result["ray_sequences"] = measured([*common, f"out_dir={seq_out}", "stop_after=sequences"], env)
    stats = json.loads((seq_out / "stats.json").read_text())
    result["raw_events"] = stats["records"]["events"]
    result["kept_events"] = stats["kept"]["events"]

    ref_out = work / f"reference-{events}.parquet"
    result["duckdb_reference"] = measured(
        [sys.executable, str(HERE / "data_build_reference.py"), str(src), str(ref_out)], env
    )
    result["sequences_equal"] = same_sequences(seq_out, ref_out)

    full_out = work / f"full-{events}"
    result["ray_full"] = measured([*common, f"out_dir={full_out}"], env)
    stats = json.loads((full_out / "stats.json").read_text())
    result["tokens_written"] = sum(c["tokens"] for split in stats["tokens"].values() for c in split.values())
    result["padding_share"] = round(
        sum(c["padding"] for split in stats["tokens"].values() for c in split.values())
        / sum(c["blocks"] for split in stats["tokens"].values() for c in split.values())
        / stats["config"]["tokens"]["block_len"],
        3,
    )
    for name in ("ray_sequences", "duckdb_reference", "ray_full"):
        result[name]["events_per_s"] = round(result["raw_events"] / result[name]["seconds"])
    result["ray_full"]["tokens_per_s"] = round(result["tokens_written"] / result["ray_full"]["seconds"])
    result["ray_over_duckdb"] = round(result["ray_sequences"]["seconds"] / result["duckdb_reference"]["seconds"], 2)
    for out in (seq_out, full_out):
        shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--work", default="/tmp/cprec-bench")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--out", default="", help="results JSON (default: WORK/results.json)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = {
        "date": date.today().isoformat(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }
    results = []
    for events in args.events:
        results.append(run(events, work, args.partitions))
        print(json.dumps(results[-1]), flush=True)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out or work / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print("\n| events | Ray to sequences | DuckDB-only | ratio | same sequences | Ray full build | tokens/s | peak memory (Ray seq / DuckDB / Ray full) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['raw_events']:,} | {r['ray_sequences']['seconds']} s ({r['ray_sequences']['events_per_s']:,} ev/s) "
            f"| {r['duckdb_reference']['seconds']} s ({r['duckdb_reference']['events_per_s']:,} ev/s) "
            f"| {r['ray_over_duckdb']}x | {r['sequences_equal']} "
            f"| {r['ray_full']['seconds']} s ({r['ray_full']['events_per_s']:,} ev/s) | {r['ray_full']['tokens_per_s']:,} "
            f"| {r['ray_sequences']['peak_gib']} / {r['duckdb_reference']['peak_gib']} / {r['ray_full']['peak_gib']} GiB |"
        )
    print(json.dumps(machine))


if __name__ == "__main__":
    main()
