"""Nothing lost, nothing deleted: what `atomic_output` may replace, stale staging, disjoint paths, safe names."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.core.schemas import SUCCESS_MARKER


def write(uri, stage="data build", files=("a.txt",)):
    with storage.atomic_output(str(uri), stage) as staging:
        for name in files:
            (storage.local_path(staging) / name).write_text(name)


def test_a_new_output_appears_marked_with_its_stage(tmp_path):
    write(tmp_path / "out")
    assert json.loads((tmp_path / "out" / SUCCESS_MARKER).read_text()) == {"stage": "data build"}
    storage.require_complete(str(tmp_path / "out"), "data build")  # readers only ask that the marker exists
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging, no owner file left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [SUCCESS_MARKER, "a.txt"]


def test_an_earlier_output_of_the_same_stage_or_an_empty_dir_is_replaced(tmp_path):
    write(tmp_path / "out", files=("old.txt",))
    write(tmp_path / "out", files=("new.txt",))
    assert not (tmp_path / "out" / "old.txt").exists() and (tmp_path / "out" / "new.txt").exists()
    (tmp_path / "legacy").mkdir()  # an earlier cprec version wrote an empty marker
    (tmp_path / "legacy" / SUCCESS_MARKER).write_text("")
    write(tmp_path / "legacy")
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty")
    assert (tmp_path / "legacy" / "a.txt").exists() and (tmp_path / "empty" / "a.txt").exists()


def test_a_directory_that_is_not_a_cprec_output_is_refused_and_untouched(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(CPRecError, match=f"out_dir {mine} exists and is not a cprec output") as exc:
        write(mine)
    assert "\n" not in str(exc.value)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging was made either
    (tmp_path / "file").write_text("x")
    with pytest.raises(CPRecError, match="is a file"):
        write(tmp_path / "file")


def test_another_stages_output_is_refused(tmp_path):
    write(tmp_path / "model", stage="train fit")
    with pytest.raises(CPRecError, match="is an output of cprec stage 'train fit', not 'data build'"):
        write(tmp_path / "model", stage="data build")
    assert (tmp_path / "model" / "a.txt").exists()


def test_the_working_directory_is_refused(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    for out in (".", str(tmp_path)):
        with pytest.raises(CPRecError, match="is the working directory or holds it"):
            write(out)
    # even an empty one, or one holding a marker: replacing it would pull the directory from under the process
    (work / "notes.txt").unlink()
    with pytest.raises(CPRecError, match="working directory"):
        write(".")
    assert work.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_a_failed_write_leaves_the_earlier_output(tmp_path):
    write(tmp_path / "out", files=("old.txt",))
    with pytest.raises(RuntimeError), storage.atomic_output(str(tmp_path / "out"), "data build"):
        raise RuntimeError("killed")
    assert (tmp_path / "out" / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def staging_dir(parent, name, owner=None):
    path = parent / name
    (path / "partial").mkdir(parents=True)
    if owner is not None:
        (path / storage.OWNER_FILE).write_text(json.dumps(owner))
    return path


def test_stale_staging_of_dead_owners_is_removed_and_live_or_foreign_ones_kept(tmp_path):
    here = {"host": socket.gethostname(), "pidns": storage._pid_namespace(), "stage": "data build"}
    dead = staging_dir(tmp_path, ".out.staging-0000dead", {**here, "pid": dead_pid()})
    dead_old = staging_dir(tmp_path, ".out.old-00000010", {**here, "pid": dead_pid()})
    live = staging_dir(tmp_path, ".out.staging-00001111", {**here, "pid": os.getpid()})
    other_host = staging_dir(tmp_path, ".out.staging-00002222", {**here, "host": "elsewhere", "pid": 1})
    unowned = staging_dir(tmp_path, ".out.staging-00003333")  # e.g. left by an earlier cprec version
    ancient = staging_dir(tmp_path, ".out.staging-00004444")
    os.utime(ancient, (time.time() - storage.STALE_AFTER_S - 60,) * 2)
    # not this output's staging, or not the exact pattern: never touched
    others = [
        staging_dir(tmp_path, name, {**here, "pid": dead_pid()})
        for name in (".other.staging-0000dead", ".out.staging-xyz", ".out.staging-0000dead2", "out.staging-0000dead")
    ]
    write(tmp_path / "out")
    assert not dead.exists() and not dead_old.exists() and not ancient.exists()
    assert live.exists() and other_host.exists() and unowned.exists()
    assert all(path.exists() for path in others)


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """s3://bucket/... served from tmp_path/bucket, to run the object-store branch without a store."""
    local_filesystem = storage.filesystem

    def filesystem(uri):
        if str(uri).startswith("s3://"):
            return pafs.LocalFileSystem(), str(tmp_path / str(uri).removeprefix("s3://"))
        return local_filesystem(uri)

    monkeypatch.setattr(storage, "filesystem", filesystem)
    (tmp_path / "bucket").mkdir()
    return tmp_path / "bucket"


def write_remote(uri, stage="data build", name="a.txt"):
    with storage.atomic_output(uri, stage) as target:
        fs, path = storage.filesystem(target)
        with fs.open_output_stream(f"{path}/{name}") as stream:
            stream.write(b"x")


def test_object_storage_replaces_only_its_own_outputs(remote):
    write_remote("s3://bucket/out", name="old.txt")
    assert json.loads((remote / "out" / SUCCESS_MARKER).read_text()) == {"stage": "data build"}
    assert not (remote / "out" / storage.OWNER_FILE).exists()
    write_remote("s3://bucket/out", name="new.txt")
    assert sorted(p.name for p in (remote / "out").iterdir()) == [SUCCESS_MARKER, "new.txt"]
    (remote / "theirs").mkdir()
    (remote / "theirs" / "data.csv").write_text("x")
    with pytest.raises(CPRecError, match="out_dir s3://bucket/theirs exists and is not a cprec output"):
        write_remote("s3://bucket/theirs")
    with pytest.raises(CPRecError, match="is an output of cprec stage 'data build', not 'train fit'"):
        write_remote("s3://bucket/out", stage="train fit")
    assert (remote / "theirs" / "data.csv").exists() and (remote / "out" / "new.txt").exists()


def test_object_storage_replaces_its_interrupted_output_unless_its_writer_lives(remote):
    here = {"host": socket.gethostname(), "pidns": storage._pid_namespace(), "stage": "data build"}
    (remote / "out").mkdir()
    (remote / "out" / "partial.txt").write_text("x")
    (remote / "out" / storage.OWNER_FILE).write_text(json.dumps({**here, "pid": os.getpid()}))
    with pytest.raises(CPRecError, match=f"unfinished output of cprec stage 'data build' \\(pid {os.getpid()}"):
        write_remote("s3://bucket/out")
    (remote / "out" / storage.OWNER_FILE).write_text(json.dumps({**here, "pid": dead_pid()}))
    write_remote("s3://bucket/out")
    assert sorted(p.name for p in (remote / "out").iterdir()) == [SUCCESS_MARKER, "a.txt"]


@pytest.mark.parametrize(
    "out, inputs, message",
    [
        ("data/in", ["data/in/"], "out_dir data/in is the input data/in/"),
        ("data/in/../in", ["data/in"], "is the input"),
        ("data/in/out", ["data/in"], "out_dir data/in/out is inside the input data/in"),
        ("data", ["elsewhere", "data/in/world.json"], "input data/in/world.json is inside out_dir data"),
        (".", ["data/in"], "input data/in is inside out_dir ."),
        ("s3://b/x/y", ["s3://b/x"], "inside the input s3://b/x"),
        ("s3://b/x", ["s3://b/x/y/../z"], "input s3://b/x/y/../z is inside"),
    ],
)
def test_an_output_overlapping_an_input_is_refused(tmp_path, monkeypatch, out, inputs, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CPRecError, match=message.replace(".", r"\.")):
        storage.check_disjoint(out, inputs, "out_dir")


def test_disjoint_paths_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    storage.check_disjoint("data/out", ["data/in", "data/out2", "", "s3://b/data/out", "gs://b/x"])
    storage.check_disjoint("s3://b/x", ["s3://b/xy", "gs://b/x", "data/in"])
    with pytest.raises(CPRecError, match="is the input"):  # a symbolic link names the same directory
        storage.check_disjoint("link/in", ["data/in"])


def test_safe_names(tmp_path):
    for name in ("Home_and_Kitchen", "Online_Retail", "ml-1m", "garden-copy", "variant-cpt-domain-only", "a+b.v2"):
        assert storage.safe_name(name, "x") == name
    for name in ("", ".", "..", "../../x", "a/b", "a\\b", ".hidden", "_work", "-rf", "a\nb", "a b", "x" * 129, 3):
        with pytest.raises(CPRecError, match="dataset name .* is not a safe name") as exc:
            storage.safe_name(name, "dataset name")
        assert "\n" not in str(exc.value)


@pytest.fixture
def cached(s3, tmp_path, monkeypatch):
    """A model-like directory on S3 (s3://cache/<test>/model), the cache in tmp_path, downloads counted."""
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    uri = f"{s3.bucket('cache')}/{tmp_path.name}/model"
    put(uri, {"config.json": "{}", "sub/tokenizer.json": "tokens"})
    downloads = []
    copy_files = pafs.copy_files
    monkeypatch.setattr(pafs, "copy_files", lambda *a, **k: downloads.append(a[0]) or copy_files(*a, **k))
    return uri, downloads


def put(uri, files):
    fs, path = storage.filesystem(uri)
    for name, text in files.items():
        with fs.open_output_stream(f"{path}/{name}") as stream:
            stream.write(text.encode())


def test_a_remote_directory_is_downloaded_once_per_content(cached, tmp_path):
    uri, downloads = cached
    local = Path(storage.local_copy(uri))
    assert local.parent == tmp_path / "cache" and len(downloads) == 1
    assert (local / "config.json").read_text() == "{}" and (local / "sub" / "tokenizer.json").read_text() == "tokens"
    assert storage.local_copy(uri + "/") == str(local) and len(downloads) == 1  # the same files: no download
    put(uri, {"config.json": '{"changed": 1}'})
    fresh = Path(storage.local_copy(uri))
    assert fresh != local and (fresh / "config.json").read_text() == '{"changed": 1}' and len(downloads) == 2
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([local.name, fresh.name])


def test_tasks_asking_at_once_all_get_one_whole_copy(cached, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    uri, _ = cached
    with ThreadPoolExecutor(4) as pool:
        copies = set(pool.map(lambda _: storage.local_copy(uri), range(4)))
    assert len(copies) == 1 and (Path(copies.pop()) / "sub" / "tokenizer.json").read_text() == "tokens"
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no staging left behind


def test_a_missing_or_unfinished_remote_model_is_a_one_line_error(cached, tmp_path):
    uri, downloads = cached
    with pytest.raises(CPRecError, match=f"^model not found at {uri}-missing$"):
        storage.local_copy(uri + "-missing")
    with pytest.raises(CPRecError, match="^tokenizer at .* is a file; give its directory$"):
        storage.local_copy(uri + "/config.json", "tokenizer")
    put(uri, {storage.OWNER_FILE: "{}"})
    with pytest.raises(CPRecError, match="is an unfinished cprec output"):
        storage.local_copy(uri)
    assert downloads == [] and not (tmp_path / "cache").exists()


def test_local_paths_and_hub_ids_pass_through(tmp_path):
    for given in (str(tmp_path), "./missing/model", "Qwen/Qwen2.5-0.5B"):
        assert storage.local_copy(given) == given  # as given: transformers tells a hub id from a path
    assert storage.local_copy(f"file://{tmp_path}") == str(tmp_path)
