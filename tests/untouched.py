"""Asserting that a refused command left the disk exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cprec.core.errors import CPRecError


def snapshot(root: Path) -> list:
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"") for p in root.rglob("*"))


def refused(run: Callable[[], object], root: Path, message: str) -> None:
    """`run()` fails with a one-line CPRecError matching `message`, and nothing under `root` changed."""
    before = snapshot(root)
    with pytest.raises(CPRecError, match=message) as exc:
        run()
    assert "\n" not in str(exc.value)
    assert snapshot(root) == before
