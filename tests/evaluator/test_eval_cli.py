import subprocess
import sys

import yaml
from eval_fixtures import catalogue, write_data_dir

from cprec.core.cli import main


def config_file(tmp_path, **extra):
    events = [(f"u{u}", f"GA{(u + k) % 12:04d}", k) for u in range(6) for k in range(4)]
    data = write_data_dir(tmp_path / "garden", "Garden", catalogue("Garden", 12), events)
    config = {
        "out_dir": str(tmp_path / "eval"),
        "datasets": [{"name": "garden", "platform": "marketplace", "data_dir": str(data)}],
        "bootstrap": 50,
        "ks": [5, 10],
        **extra,
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    missing = {"methods": [{"kind": "llm", "model": str(tmp_path / "no-model")}]}
    assert main(["eval", "--config", str(config_file(tmp_path, **missing))]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no-model does not exist" in error

    assert main(["eval", "--config", str(config_file(tmp_path)), "ks=[5,10,50]"]) == 2
    assert "K=50 is larger than the 12 ranked items of dataset 'garden'" in capsys.readouterr().err

    assert main(["eval", "--config", str(config_file(tmp_path)), "methods=[{kind: magic}]"]) == 2
    assert "method kind 'magic'" in capsys.readouterr().err

    assert main(["eval", "report", f"out_dir={tmp_path / 'nothing'}"]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_baselines_run_and_the_module_entry_point(tmp_path):
    # in this process: a Ray of its own would cost the subprocess more than the whole evaluation
    methods = {"methods": [{"kind": "popularity"}, {"kind": "content"}], "baseline_cpus": 0}
    result = subprocess.run(
        [sys.executable, "-m", "cprec.evaluator", "run", "--config", str(config_file(tmp_path, **methods))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "garden: best test ndcg@10" in result.stdout
    assert "[cprec eval] garden / content: done in " in result.stdout
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| popularity | - |" in report and "| content | - |" in report


def test_dataset_no_method_asks_for_is_reported_empty(tmp_path, ray_local):
    path = config_file(tmp_path, methods=[{"kind": "popularity", "datasets": ["garden"]}])
    config = yaml.safe_load(path.read_text())
    config["datasets"].append({**config["datasets"][0], "name": "garden-copy"})
    path.write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(path)]) == 0
    results = yaml.safe_load((tmp_path / "eval" / "results.json").read_text())
    assert list(results["datasets"]["garden"]["methods"]) == ["popularity"]
    assert results["datasets"]["garden-copy"]["methods"] == {}
    assert results["datasets"]["garden-copy"]["significance"] == {}
