"""Paths that may be local or object storage (`s3://`, `gs://`), through pyarrow's filesystems.

Outputs are written aside and moved into place (`atomic_output`): a killed run leaves the old
complete output or none. On object stores, where there is no atomic rename, the `_SUCCESS` marker
written last is what makes an output complete; readers call `require_complete`.

Nothing is lost: an output only ever replaces nothing, an empty directory or a complete earlier
output of the same stage (its `_SUCCESS` names the stage); an output never overlaps an input
(`check_disjoint`); a name from a config or a data file becomes a path component only through
`safe_name`.

Models and tokenizers are read by libraries that only open local files (transformers): `local_copy`
downloads a remote directory once per node into a cache keyed by its URI and its files' sizes and
modification times, so a rewritten object gets a fresh copy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs as pafs

from cprec.core.errors import CPRecError
from cprec.core.schemas import SUCCESS_MARKER

log = logging.getLogger("cprec.core.storage")
OWNER_FILE = ".cprec-owner.json"  # in a staging directory: which process writes it
# A staging directory whose owner cannot be asked (another host, or no owner file) is stale after
# this long: longer than any build, so a run on another host sharing the disk keeps its staging.
STALE_AFTER_S = 24 * 3600
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
CACHE_ENV = "CPREC_CACHE_DIR"  # the node-local cache of `local_copy`; default ~/.cache/cprec


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


def read_text(uri: str) -> str:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode()


def write_bytes(uri: str, data: bytes) -> None:
    """Writes `data` at `uri` (local or object storage), creating the parent directories."""
    fs, path = filesystem(uri)
    if "/" in path.rstrip("/"):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


def write_json(uri: str, payload: Any, indent: int | None = 2) -> None:
    """`payload` as JSON at `uri`; numpy scalars and arrays are written as numbers and lists."""
    write_text(uri, json.dumps(payload, indent=indent, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy here
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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


def content_digest(uris: Iterable[str]) -> str:
    """A digest of the files at `uris` (files or directories, searched recursively): each file's URI,
    size and modification time, so a changed, added or removed file changes it without reading data."""
    import hashlib

    digest = hashlib.sha256()
    for uri in uris:
        fs, path = filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise CPRecError(f"input path does not exist: {uri}")
        infos = [info] if info.type == pafs.FileType.File else fs.get_file_info(pafs.FileSelector(path, recursive=True))
        for i in sorted(infos, key=lambda i: i.path):
            if i.type == pafs.FileType.File:
                digest.update(f"{uri}|{i.path}|{i.size}|{i.mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def local_copy(uri: str, what: str = "model") -> str:
    """A local directory with what is at `uri`: a local path (or a hub id) as given, less `file://`; a
    remote directory downloaded into this node's cache (`CPREC_CACHE_DIR`) unless a copy of the same
    files is there.

    The copy is written aside and renamed into place, so Ray tasks on one node that ask at once
    all get the one whole copy that finished first."""
    if is_local(uri):
        return str(uri).removeprefix("file://")
    fs, path = filesystem(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.NotFound:
        raise CPRecError(f"{what} not found at {uri}")
    if kind == pafs.FileType.File:
        raise CPRecError(f"{what} at {uri} is a file; give its directory")
    if exists(join(uri, OWNER_FILE)):
        raise CPRecError(f"{what} at {uri} is an unfinished cprec output; wait for its stage or re-run it")
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cprec").expanduser().absolute()
    final = root / content_digest([str(uri).rstrip("/")])
    if final.is_dir():
        return str(final)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    staging = root / f".{final.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _write_owner(staging / OWNER_FILE, "cache")
        pafs.copy_files(path, str(staging), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        (staging / OWNER_FILE).unlink()
        try:
            staging.rename(final)
        except OSError:  # fine when another task renamed its copy into place first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("copied %s to %s", uri, final)
    return str(final)


def require_complete(uri: str, what: str) -> None:
    """Fails with a clear message unless `uri` is a finished output of a cprec stage."""
    if not exists(uri):
        raise CPRecError(f"{what} not found at {uri}")
    if not exists(join(uri, SUCCESS_MARKER)):
        raise CPRecError(f"{what} at {uri} is incomplete (no {SUCCESS_MARKER}); re-run the stage that writes it")


@contextlib.contextmanager
def atomic_output(uri: str, stage: str) -> Iterator[str]:
    """Yields a staging location; on success it becomes `uri`, marked complete by `stage`; on
    failure it is removed. What is at `uri` must be replaceable (`check_replaceable`), checked
    before the work and again before the swap."""
    check_replaceable(uri, stage)
    if is_local(uri):
        final = Path(os.path.abspath(local_path(uri)))
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(final)
        staging = final.parent / f".{final.name}.staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            _write_owner(staging / OWNER_FILE, stage)
            yield str(staging)
            (staging / OWNER_FILE).unlink(missing_ok=True)
            (staging / SUCCESS_MARKER).write_text(_marker(stage))
            check_replaceable(uri, stage)  # something else may have appeared there meanwhile
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            if final.exists():
                final.rename(old)
                _write_owner(old / OWNER_FILE, stage)  # a kill before the rmtree leaves it to be cleaned
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return
    # Object stores have no rename: the output is written in place, with an owner file that marks
    # it as this stage's interrupted output until the marker is written.
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir_contents(path, missing_dir_ok=True)
    fs.create_dir(path, recursive=True)
    write_text(join(uri, OWNER_FILE), _owner(stage))
    yield str(uri)
    write_text(join(uri, SUCCESS_MARKER), _marker(stage))
    fs.delete_file(f"{path.rstrip('/')}/{OWNER_FILE}")


def check_replaceable(uri: str, stage: str) -> None:
    """Refuses (one line) to replace what is at `uri` unless it is nothing, an empty directory or a
    complete earlier output of `stage` (on object stores also its interrupted output); never the
    working directory or one holding it, never a symbolic link."""
    refuse = "refusing to replace it — choose another out_dir or remove it yourself"
    fs, path = filesystem(uri)
    if is_local(uri):
        if Path(path).is_symlink():
            raise CPRecError(f"out_dir {uri} is a symbolic link; {refuse}")
        if PurePosixPath(os.getcwd()).is_relative_to(os.path.realpath(path)):
            raise CPRecError(f"out_dir {uri} is the working directory or holds it; {refuse}")
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory:
        raise CPRecError(f"out_dir {uri} exists and is a file, not a cprec output; {refuse}")
    names = {posixpath.basename(i.path.rstrip("/")) for i in fs.get_file_info(pafs.FileSelector(path))}
    if not names:
        return
    if SUCCESS_MARKER in names:
        written_by = _read_record(fs, f"{path.rstrip('/')}/{SUCCESS_MARKER}").get("stage", "")
        if written_by in ("", stage):  # "": a marker of an earlier cprec version, which named no stage
            return
        raise CPRecError(f"out_dir {uri} is an output of cprec stage '{written_by}', not '{stage}'; {refuse}")
    if OWNER_FILE in names and not is_local(uri):
        owner = _read_record(fs, f"{path.rstrip('/')}/{OWNER_FILE}")
        if owner.get("stage") == stage and not _alive_here(owner):
            return  # this stage's interrupted output
        raise CPRecError(
            f"out_dir {uri} holds an unfinished output of cprec stage '{owner.get('stage', '?')}' "
            f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')}); {refuse}"
        )
    raise CPRecError(f"out_dir {uri} exists and is not a cprec output (no {SUCCESS_MARKER}); {refuse}")


def remove_stale_staging(final: Path) -> None:
    """Removes the `.<name>.staging-<hex>` and `.<name>.old-<hex>` directories of the local output
    `final` that killed runs left behind: only those whose owner is a dead process on this host, or
    that are older than STALE_AFTER_S when their owner cannot be asked."""
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(staging|old)-[0-9a-f]{{8}}")
    for entry in final.parent.iterdir():
        if not pattern.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        owner_file = entry / OWNER_FILE
        try:
            owner = json.loads(owner_file.read_text())
            age = time.time() - owner_file.stat().st_mtime
        except (OSError, ValueError):
            try:
                owner, age = {}, time.time() - entry.stat().st_mtime
            except FileNotFoundError:
                continue  # another run removed it meanwhile
        if not isinstance(owner, dict):
            owner = {}
        here = owner.get("host") == socket.gethostname() and owner.get("pidns") == _pid_namespace()
        if not _alive_here(owner) if here else age > STALE_AFTER_S:
            log.warning("removing %s, left by a run that was killed", entry)
            shutil.rmtree(entry, ignore_errors=True)


def check_disjoint(out: str, inputs: Iterable[str], what: str = "out_dir") -> None:
    """Refuses (one line) an output that is an input or lies inside one, and an input that lies
    inside the output: writing or replacing the output must never touch an input."""
    out_key = _location(out)
    for uri in inputs:
        if not uri:
            continue
        key = _location(uri)
        if key[0] != out_key[0]:
            continue
        if key[1] == out_key[1]:
            raise CPRecError(f"{what} {out} is the input {uri}; choose another {what}")
        if out_key[1].is_relative_to(key[1]):
            raise CPRecError(f"{what} {out} is inside the input {uri}; choose another {what}")
        if key[1].is_relative_to(out_key[1]):
            raise CPRecError(f"input {uri} is inside {what} {out}; choose another {what}")


def safe_name(name: Any, what: str) -> str:
    """`name`, if it can be one path component anywhere; else a one-line error naming `what`."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise CPRecError(
            f"{what} {name!r} is not a safe name: up to 128 letters, digits, '_', '.', '+' or '-', "
            "starting with a letter or digit"
        )
    return name


def _location(uri: str) -> tuple[str, PurePosixPath]:
    """(scheme, normalised absolute path) of `uri`; local paths with symbolic links resolved, a
    remote path led by its bucket."""
    if is_local(uri):
        return "", PurePosixPath(os.path.realpath(local_path(uri)))
    scheme, _, rest = str(uri).partition("://")
    return scheme.lower(), PurePosixPath(posixpath.normpath("/" + rest))


def _marker(stage: str) -> str:
    return json.dumps({"stage": stage}) + "\n"


def _owner(stage: str) -> str:
    record = {"stage": stage, "pid": os.getpid(), "host": socket.gethostname(), "pidns": _pid_namespace()}
    return json.dumps(record) + "\n"


def _write_owner(file: Path, stage: str) -> None:
    file.write_text(_owner(stage))


def _read_record(fs: pafs.FileSystem, path: str) -> dict:
    """A marker's or owner file's JSON object; {} for an empty or unreadable one."""
    try:
        with fs.open_input_stream(path) as stream:
            record = json.loads(stream.read() or b"{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _pid_namespace() -> str:
    """Processes in another PID namespace (container) on the same host are not ours to ask."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _alive_here(owner: dict) -> bool:
    """Whether the owner record names a live process of this host and PID namespace."""
    if owner.get("host") != socket.gethostname() or owner.get("pidns") != _pid_namespace():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True
