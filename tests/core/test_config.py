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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("inner.k=[1,", "override 'inner.k=[1,' is not valid: while parsing a flow node"),
        ("tags=[{format: x", "override 'tags=[{format: x' is not valid: while parsing a flow mapping"),
        ("name=!!float abc", "override 'name=!!float abc' is not valid: could not convert"),
        ("name=\x00", "is not valid: unacceptable character #x0000"),
    ],
)
def test_malformed_override_is_a_one_line_error_naming_it(override, message):
    with pytest.raises(CPRecError) as raised:
        load_config(Outer, None, ["name=ok", override])
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_malformed_yaml_file_is_a_one_line_error_with_its_place(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ntags: [a,\n")
    with pytest.raises(CPRecError, match=r"c.yaml is not valid YAML: .*\(line 3, column 1\)$"):
        load_config(Outer, path)
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(CPRecError, match="cannot read config file .*c.yaml: 'utf-8' codec can't decode"):
        load_config(Outer, path)
