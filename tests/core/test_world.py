import json
import os

import pytest

from cprec.core.errors import CPRecError
from cprec.core.world import load_world, world_source


def test_relative_source_paths_are_taken_from_the_world_files_directory(tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "world.json").write_text(json.dumps({"pretrain": [], "downstream": []}))
    monkeypatch.chdir(tmp_path)
    assert load_world("w/world.json") == {"pretrain": [], "downstream": []}
    source = world_source("w/world.json", {"format": "amazon2023", "path": "marketplace"}, "pretrain[0]")
    assert source == {"format": "amazon2023", "path": os.path.join(str(tmp_path), "w", "marketplace")}
    # absolute and remote paths stay as written; a remote world resolves relative paths remotely
    assert world_source("w/world.json", {"path": "/data/x"}, "p")["path"] == "/data/x"
    assert world_source("w/world.json", {"path": "s3://b/x"}, "p")["path"] == "s3://b/x"
    assert world_source("s3://b/w/world.json", {"path": "x.csv"}, "p")["path"] == "s3://b/w/x.csv"


def test_bad_world_files_name_the_file_and_the_entry(tmp_path):
    with pytest.raises(CPRecError, match="world file not found"):
        load_world(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CPRecError, match="bad.json is not valid JSON"):
        load_world(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(CPRecError, match="is not a JSON object"):
        load_world(str(tmp_path / "list.json"))
    with pytest.raises(CPRecError, match=r"downstream\[2\]\.source is not an object"):
        world_source(str(tmp_path / "w.json"), "marketplace", "downstream[2].source")


def test_names_that_become_paths_must_be_safe(tmp_path):
    source = {"format": "amazon2023", "path": "marketplace"}
    good = {"name": "Pet_Supplies", "platform": "marketplace", "source": {**source, "domains": ["Pet_Supplies"]}}
    bad = [
        ({"downstream": [good, good, {**good, "name": "../../x"}]}, r"downstream\[2\]\.name '\.\./\.\./x' is not a safe name"),
        ({"downstream": [{**good, "source": {**source, "domains": ["a/b"]}}]}, r"downstream\[0\]\.source\.domains\[0\]"),
        ({"pretrain": [{"format": "online_retail", "path": "r.csv", "domain": ".."}]}, r"pretrain\[0\]\.domain '\.\.'"),
    ]
    (tmp_path / "ok.json").write_text(json.dumps({"pretrain": [source], "downstream": [good]}))
    assert load_world(str(tmp_path / "ok.json"))["downstream"] == [good]
    for world, message in bad:
        (tmp_path / "world.json").write_text(json.dumps(world))
        with pytest.raises(CPRecError, match=f"world file {tmp_path / 'world.json'}: {message}"):
            load_world(str(tmp_path / "world.json"))
