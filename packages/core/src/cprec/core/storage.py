"""Paths that may be local or object storage (`s3://`, `gs://`), through pyarrow's filesystems.

Outputs are written aside and moved into place (`atomic_output`): a killed run leaves the old
complete output or none. On object stores, where there is no atomic rename, the `_SUCCESS` marker
written last is what makes an output complete; readers call `require_complete`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from cprec.core.errors import CPRecError
from cprec.core.schemas import SUCCESS_MARKER


def is_local(uri: str) -> bool:
    return "://" not in str(uri) or str(uri).startswith("file://")


def local_path(uri: str) -> Path:
    return Path(str(uri).removeprefix("file://"))


def absolute(uri: str) -> str:
    """A local path made absolute (Ray's workers and actors do not run in the driver's directory);
    remote URIs and '' unchanged."""
    return str(local_path(uri).absolute()) if uri and is_local(uri) else uri


def absolute_if_present(uri: str) -> str:
    """A local path that exists, made absolute; anything else unchanged (a hub model id such as
    'org/name' is left to transformers, a remote URI to its filesystem)."""
    return absolute(uri) if uri and is_local(uri) and local_path(uri).exists() else uri


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem serving `uri` and the path inside it."""
    if is_local(uri):
        return pafs.LocalFileSystem(), str(local_path(uri).absolute())
    try:
        return pafs.FileSystem.from_uri(str(uri))
    except Exception as exc:  # pyarrow raises several types for unknown schemes and bad buckets
        raise CPRecError(f"cannot open storage path {uri}: {exc}".splitlines()[0]) from exc


def join(uri: str, *parts: str) -> str:
    return "/".join([str(uri).rstrip("/"), *parts])


def read_json(uri: str, label: str = "") -> Any:
    """The JSON document at `uri`; `label` (e.g. "world file") leads the one-line error if it does not parse."""
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        try:
            return json.loads(stream.read())
        except ValueError as exc:
            raise CPRecError(f"{label + ' ' if label else ''}{uri} is not valid JSON: {exc}") from exc


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Files under `uri` (a file or a directory, searched recursively), sorted, as URIs."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise CPRecError(f"input path does not exist: {uri}")
    if info.type == pafs.FileType.File:
        return [str(uri)]
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    prefix = "" if is_local(uri) else str(uri)[: str(uri).index("://") + 3]
    files = [
        prefix + i.path
        for i in infos
        if i.type == pafs.FileType.File
        and not os.path.basename(i.path).startswith((".", "_"))
        and (not suffixes or i.path.endswith(suffixes))
    ]
    return sorted(files)


def require_complete(uri: str, what: str) -> None:
    """Fails with a clear message unless `uri` is a finished output of a cprec stage."""
    if not exists(uri):
        raise CPRecError(f"{what} not found at {uri}")
    if not exists(join(uri, SUCCESS_MARKER)):
        raise CPRecError(f"{what} at {uri} is incomplete (no {SUCCESS_MARKER}); re-run the stage that writes it")


@contextlib.contextmanager
def atomic_output(uri: str) -> Iterator[str]:
    """Yields a staging location; on success it becomes `uri`, marked complete; on failure it is removed."""
    if is_local(uri):
        final = local_path(uri).absolute()
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{final.name}.staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            yield str(staging)
            (staging / SUCCESS_MARKER).write_text("")
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            if final.exists():
                final.rename(old)
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return
    fs, path = filesystem(uri)
    marker = f"{path.rstrip('/')}/{SUCCESS_MARKER}"
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir_contents(path, missing_dir_ok=True)
    fs.create_dir(path, recursive=True)
    yield str(uri)
    with fs.open_output_stream(marker) as stream:
        stream.write(b"")
