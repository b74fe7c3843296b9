import json
import subprocess
import sys

from cprec.core.cli import main


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cprec.data_prep", *args], capture_output=True, text=True, timeout=120, check=False)


def test_build_help_lists_every_option():
    result = run_module("build", "--help")
    assert result.returncode == 0
    for key in ("out_dir", "world", "cleaning.k_users", "sequences.max_items", "tokens.block_len", "max_reject_rate"):
        assert key in result.stdout


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["data", "build", f"out_dir={tmp_path / 'out'}"]) == 2
    assert capsys.readouterr().err.strip() == "cprec: error: nothing to build: set `world` (a world.json) or `sources`"
    result = run_module("build", f"out_dir={tmp_path / 'out'}", f"world={tmp_path / 'missing.json'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"cprec: error: world file not found: {tmp_path / 'missing.json'}"
    assert "Traceback" not in result.stderr


def test_malformed_overrides_and_config_are_one_line_errors(tmp_path, capsys):
    for override in ("cleaning.k_users=[1,", "sources=[{format: x"):
        assert main(["data", "build", f"out_dir={tmp_path / 'out'}", override]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"cprec: error: override {override!r} is not valid: ") and err.count("\n") == 1
    config = tmp_path / "build.yaml"
    config.write_text("sources:\n  - {format: recbole, path: x\n")
    assert main(["data", "build", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cprec: error: config file {config} is not valid YAML: ") and err.count("\n") == 1


def test_synth_then_build_a_world_from_the_command_line(tmp_path, ray_local, capsys):
    world = tmp_path / "world"
    overrides = ["users=60", "items_per_domain=20", "events_per_user=12", "retail_users=20", "retail_items=20"]
    assert main(["data", "synth", f"out_dir={world}", *overrides]) == 0
    world_json = capsys.readouterr().out.strip()
    out = tmp_path / "data"
    args = [f"world={world_json}", f"out_dir={out}", "partitions=2", "task_cpus=0.5", "progress_bars=false"]
    assert main(["data", "build", *args, "stop_after=sequences", "cleaning.k_users=3", "cleaning.k_items=3"]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: kept ")
    stats = json.loads((out / "stats.json").read_text())
    manifest = json.loads((world / "world.json").read_text())
    pretrain = {d for s in manifest["pretrain"] for d in s["domains"]}
    downstream = {d["name"] for d in manifest["downstream"]}
    with_events = {d for d, counts in stats["domains"].items() if "events" in counts}
    assert with_events == pretrain
    # the downstream catalogues are text for the tokenizer and catalogue replay, never events
    text_only = {d for d, counts in stats["domains"].items() if counts.get("catalog_text_items")}
    assert text_only == downstream
    assert len(stats["catalogs"]) == len(manifest["downstream"])
    assert stats["kept"]["events"] > 0 and stats["sequences"]["mixed"]["train"] > 0
