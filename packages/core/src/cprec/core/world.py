"""The world file (`world.json`): which sources a run pre-trains on and which it evaluates on.

`pretrain` lists source entries of the pre-training corpus (data_prep reads them); `downstream`
lists `{name, platform, source}` entries of the evaluation datasets (the evaluator reads them as
datasets, data_prep as text-only catalogues). A local source path may be relative to the world file
itself, so a generated world can be moved or copied as one directory.
"""

from __future__ import annotations

import os
from typing import Any

from cprec.core import storage
from cprec.core.errors import CPRecError


def load_world(uri: str) -> dict[str, Any]:
    """The parsed world file at `uri` (local path or s3://, gs://), with one-line errors."""
    if not storage.exists(uri):
        raise CPRecError(f"world file not found: {uri}")
    world = storage.read_json(uri, "world file")
    if not isinstance(world, dict):
        raise CPRecError(f"world file {uri} is not a JSON object")
    _check_names(uri, world)
    return world


def world_dir(uri: str) -> str:
    """The directory of the world file `uri`, which its relative source paths are taken from."""
    if storage.is_local(uri):
        return os.path.dirname(os.path.abspath(storage.local_path(uri)))
    return uri.rsplit("/", 1)[0]


def _check_names(uri: str, world: dict) -> None:
    """Dataset and domain names become path components downstream: one bad entry, one clear error."""
    for section in ("pretrain", "downstream"):
        entries = world.get(section)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue
            where = f"world file {uri}: {section}[{i}]"
            if section == "downstream":
                if entry.get("name"):
                    storage.safe_name(entry["name"], f"{where}.name")
                where, entry = f"{where}.source", entry.get("source")
                if not isinstance(entry, dict):
                    continue
            domains = entry.get("domains") or []
            for j, domain in enumerate(domains if isinstance(domains, list) else [domains]):
                storage.safe_name(domain, f"{where}.domains[{j}]")
            if entry.get("domain"):
                storage.safe_name(entry["domain"], f"{where}.domain")


def world_source(uri: str, entry: Any, where: str) -> dict[str, Any]:
    """A copy of the source entry `entry` (found at `where` in the world file `uri`) whose local
    relative path is taken relative to the world file."""
    if not isinstance(entry, dict):
        raise CPRecError(f"world file {uri}: {where} is not an object")
    source = dict(entry)
    path = source.get("path", "")
    if isinstance(path, str) and path and storage.is_local(path) and not os.path.isabs(storage.local_path(path)):
        if storage.is_local(uri):  # absolute, so Ray workers in another working directory find it too
            source["path"] = os.path.abspath(os.path.join(os.path.dirname(storage.local_path(uri)), path))
        else:
            source["path"] = storage.join(uri.rsplit("/", 1)[0], path)
    return source
