"""A run's own checkpoints: <root>/step-NNNNNNNN/, one directory per saved step, local or on object storage.

Several runs share one Ray Train worker group (fit.fit_group), so a run cannot lean on the group's
checkpoint bookkeeping to resume: each run keeps its checkpoints under its own root. Every worker
uploads the files DeepSpeed wrote for its rank, then rank 0 writes PROGRESS_FILE last: a step
directory without it is an interrupted save and is never restored from.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from cprec.core import storage

PROGRESS_FILE = "progress.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


def step_dir(root: str, step: int) -> str:
    return storage.join(root, f"step-{step:08d}")


def committed_steps(root: str) -> list[int]:
    """Steps with a complete checkpoint under `root`, oldest first."""
    if not storage.exists(root):
        return []
    fs, path = storage.filesystem(root)
    import pyarrow.fs as pafs

    steps = []
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        match = _STEP_DIR.match(info.base_name)
        if match and info.type == pafs.FileType.Directory and storage.exists(
            storage.join(step_dir(root, int(match.group(1))), PROGRESS_FILE)
        ):
            steps.append(int(match.group(1)))
    return sorted(steps)


def latest_progress(root: str) -> dict:
    """The progress record of the newest complete checkpoint ({"step": 0} when there is none)."""
    steps = committed_steps(root)
    if not steps:
        return {"step": 0}
    return storage.read_json(storage.join(step_dir(root, steps[-1]), PROGRESS_FILE))


def upload(local_dir: str, target: str) -> None:
    """Copies this worker's checkpoint files into the step directory (other ranks add theirs)."""
    if storage.is_local(target):
        shutil.copytree(local_dir, storage.local_path(target), dirs_exist_ok=True)
        return
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(target)
    pafs.copy_files(local_dir, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def commit(root: str, step: int, progress: dict, keep: int) -> None:
    """Marks the step's checkpoint complete, then drops all but the newest `keep` (rank 0, after every
    rank uploaded)."""
    storage.write_text(storage.join(step_dir(root, step), PROGRESS_FILE), json.dumps(progress))
    for old in committed_steps(root)[:-keep] if keep > 0 else []:
        fs, path = storage.filesystem(step_dir(root, old))
        fs.delete_dir(path)


def download(root: str, step: int, local_dir: Path) -> Path:
    """The checkpoint of `step` as a local directory (DeepSpeed reads every rank's ZeRO partition on load)."""
    source = step_dir(root, step)
    if storage.is_local(source):
        return storage.local_path(source)
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(source)
    pafs.copy_files(path, str(local_dir), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return local_dir
