"""Configs are dataclasses: defaults in code, YAML files on top, `key.sub=value` overrides last.

OmegaConf does the merging and type checking, so a wrong key or a wrong type is a one-line error
that names the key. Each field's `help` metadata is what `cprec ... --help` prints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cprec.core.errors import CPRecError

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field carrying its help text; mutable defaults are copied per instance."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: _copy(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def layered(*sections: dict[str, Any] | None) -> dict[str, Any]:
    """Deep merge of config sections as plain dicts, later ones winning (lists are replaced)."""
    merged = OmegaConf.merge(*[OmegaConf.create(dict(s or {})) for s in sections])
    return OmegaConf.to_container(merged)  # type: ignore[return-value]


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> T:
    """Builds a `cls` from its defaults, then `base` (e.g. a preset's section), the YAML file at
    `path` and dotted `key=value` overrides, each layer over the one before."""
    try:
        merged = OmegaConf.structured(cls)
        if base:
            merged = OmegaConf.merge(merged, OmegaConf.create(base))
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise CPRecError(f"config file not found: {path}")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CPRecError(f"cannot read config file {path}: {_first_line(exc)}") from exc
            try:
                loaded = yaml.safe_load(text) or {}
            except (yaml.YAMLError, ValueError) as exc:  # ValueError: a tagged value that does not convert
                raise CPRecError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from exc
            if not isinstance(loaded, dict):
                raise CPRecError(f"config file {path} must hold a mapping at its top level")
            merged = OmegaConf.merge(merged, OmegaConf.create(loaded))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise CPRecError(f"override {bad[0]!r} is not of the form key=value")
            for override in overrides:  # each alone first, so that an error names its override
                try:
                    OmegaConf.from_dotlist([override])
                except (yaml.YAMLError, ValueError, OmegaConfBaseException) as exc:
                    why = _first_line(exc) if isinstance(exc, OmegaConfBaseException) else _yaml_problem(exc, False)
                    raise CPRecError(f"override {override!r} is not valid: {why}") from exc
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise CPRecError(f"invalid config ({cls.__name__}): {_first_line(exc)}") from exc
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config  # type: ignore[return-value]


def _yaml_problem(exc: Exception, where: bool = True) -> str:
    """PyYAML's error of several lines as one: what went wrong and, with `where`, at which line and
    column (of an override's value they say nothing)."""
    problem = getattr(exc, "problem", None)
    if not problem:
        return _first_line(exc)
    context = getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None)
    place = f" (line {mark.line + 1}, column {mark.column + 1})" if where and mark is not None else ""
    return f"{context + ': ' if context else ''}{problem}{place}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    details = [line.strip() for line in text[1:] if line.strip().startswith(("full_key", "object_type"))]
    return " ".join([text[0] if text else type(exc).__name__, *details[:1]])


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def config_digest(*parts: Any) -> str:
    """A short content hash of configs and other JSON-able inputs, for content-addressed outputs."""
    payload = json.dumps(
        [to_dict(p) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per leaf option: `key (type, default): help`, nested dataclasses flattened."""
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        kind = hints.get(field.name, field.type)
        if dataclasses.is_dataclass(kind):
            help_text = field.metadata.get("help", "")
            if help_text:
                lines.append(f"  {key}.*: {help_text}")
            lines.extend(describe(kind, prefix=f"{key}."))
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        else:
            default = "required"
        type_name = getattr(kind, "__name__", str(kind)).replace("typing.", "")
        lines.append(f"  {key} ({type_name}, default {default!r}): {field.metadata.get('help', '')}")
    return lines
