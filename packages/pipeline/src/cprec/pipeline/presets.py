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

    `extends: <preset>` at the top of a preset layers it over that preset (mappings merged, lists
    replaced), so a preset states only what it changes. Its `variants` may then also be a mapping
    from names of the parent's variants to changes layered over that variant, or to null to drop it
    (`variants: {CPT cosine: null, CPT domain-only: {sft: false}}`); the others stay, in order.
    """
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise CPRecError(f"unknown preset {name!r}: choose one of {', '.join(preset_names())} or give a .yaml path")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise CPRecError(f"preset {path} must hold a mapping")
    parent = data.pop("extends", None)
    if parent is None:
        if isinstance(data.get("variants"), dict):
            raise CPRecError(f"preset {path}: variants by name change a parent's variants, but it extends none")
        return data
    if parent in (*_seen, name):
        raise CPRecError(f"preset {path} extends {parent!r}, which extends it back")
    base = load_preset(str(parent), (*_seen, name))
    if isinstance(data.get("variants"), dict):
        data["variants"] = _changed_variants(base.get("variants") or [], data["variants"], f"preset {path}", parent)
    return layered(base, data)


def _changed_variants(variants: list, changes: dict, where: str, parent: str) -> list:
    """`variants` (the parent's list) with `changes` by name: a mapping layered over the variant of
    that name, or None to drop it."""
    names = [v.get("name") if isinstance(v, dict) else None for v in variants]
    unknown = [n for n in changes if n not in names]
    if unknown:
        raise CPRecError(
            f"{where}: variants names {unknown}, which {parent!r} does not have (its variants: {names}); "
            "give a list to replace them all"
        )
    out = []
    for variant, name in zip(variants, names):
        if name in changes:
            change = changes[name]
            if change is None:
                continue
            if not isinstance(change, dict):
                raise CPRecError(f"{where}: variants.{name} must be a mapping of changes, or null to drop it")
            variant = layered(variant, change)
        out.append(variant)
    return out
