from dataclasses import dataclass

import pytest

from cprec.core import CPRecError
from cprec.core.config import describe, load_config, option


@dataclass
class Inner:
    k: int = option(5, help="core size")


@dataclass
class Outer:
    name: str = option("x", help="a name")
    inner: Inner = option(Inner(), help="nested")
    tags: list = option(["a"], help="tags")


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner:\n  k: 3\n")
    config = load_config(Outer, path, ["inner.k=7"])
    assert config.name == "y" and config.inner.k == 7 and config.tags == ["a"]


def test_bad_key_and_bad_type_are_one_line_errors(tmp_path):
    with pytest.raises(CPRecError, match="inner.nope|nope"):
        load_config(Outer, None, ["inner.nope=1"])
    with pytest.raises(CPRecError, match="k"):
        load_config(Outer, None, ["inner.k=abc"])
    with pytest.raises(CPRecError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    with pytest.raises(CPRecError, match="key=value"):
        load_config(Outer, None, ["inner.k"])


def test_describe_lists_every_leaf():
    lines = "\n".join(describe(Outer))
    assert "name (str, default 'x'): a name" in lines and "inner.k (int, default 5): core size" in lines
