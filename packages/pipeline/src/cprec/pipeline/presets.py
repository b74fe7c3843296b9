"""Presets: named `cprec run` configs shipped with the package (presets/<name>.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from cprec.core.config import layered
from cprec.core.errors import CPRecError

PRESET_DIR = Path(__file__).with_name("presets")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict:
    """The preset's sections as a dict; `name` is a shipped preset or a path to a YAML file.

    `extends: <preset>` at the top of a preset layers it over that preset (lists such as `variants`
    are replaced, mappings merged), so a preset states only what it changes.
    """
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise CPRecError(f"unknown preset {name!r}: choose one of {', '.join(preset_names())} or give a .yaml path")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise CPRecError(f"preset {path} must hold a mapping")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if parent in (*_seen, name):
        raise CPRecError(f"preset {path} extends {parent!r}, which extends it back")
    return layered(load_preset(str(parent), (*_seen, name)), data)
