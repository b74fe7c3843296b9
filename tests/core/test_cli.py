"""The `cprec` command's error lines: one line for what a user can act on, a traceback for bugs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass

import pyarrow as pa
import pytest

from cprec.core import cli
from cprec.core.cli import add_config_command, main, user_error
from cprec.core.config import option
from cprec.core.errors import CPRecError

REMOTE_TRACEBACK = """Traceback (most recent call last):
  File "/x/readers.py", line 540, in chunks
    chunk = stream.read(1 << 22)
OSError: Truncated compressed stream

The above exception was the direct cause of the following exception:

\x1b[36mray::ReadSource->SplitBlocks(4)()\x1b[39m (pid=4335, ip=192.0.2.2)
  File "/x/readers.py", line 542, in chunks
    raise CPRecError(f"cannot read {source_file}: {exc}".splitlines()[0]) from exc
cprec.core.errors.CPRecError: cannot read /data/Books.jsonl.gz: Truncated compressed stream
"""


def ray_task_error(cause: BaseException, traceback: str = REMOTE_TRACEBACK) -> Exception:
    """What `ray.get` raises on the driver for a task that raised `cause` (built without starting Ray)."""
    from ray.exceptions import RayTaskError

    error = RayTaskError("read", traceback, cause, proctitle="ray::read", pid=1, ip="127.0.0.1")
    return error.as_instanceof_cause()


def test_ray_task_errors_become_their_cause_line():
    error = ray_task_error(CPRecError("cannot read /data/Books.jsonl.gz: Truncated compressed stream"))
    assert isinstance(error, CPRecError) and len(str(error).splitlines()) > 5  # what used to be printed
    assert user_error(error) == "cannot read /data/Books.jsonl.gz: Truncated compressed stream"
    missing = FileNotFoundError(2, "No such file or directory", "/data/x")
    assert user_error(ray_task_error(missing)) == "FileNotFoundError: [Errno 2] No such file or directory: '/data/x'"
    assert user_error(ray_task_error(pa.ArrowInvalid("Parquet magic bytes not found\nmore"))) == (
        "ArrowInvalid: Parquet magic bytes not found"
    )
    nested = ray_task_error(ray_task_error(CPRecError("inner")))
    assert user_error(nested) == "inner"


def test_ray_data_udf_errors_are_read_from_the_traceback():
    from ray.exceptions import UserCodeException

    udf = ray_task_error(UserCodeException("UDF failed to process a data block."))
    assert user_error(udf) == "cannot read /data/Books.jsonl.gz: Truncated compressed stream"
    io_only = REMOTE_TRACEBACK.split("\n\n")[0] + "\nray.exceptions.UserCodeException: UDF failed\n"
    assert user_error(ray_task_error(UserCodeException("UDF failed"), io_only)) == (
        "OSError: Truncated compressed stream"
    )
    bug = "Traceback (most recent call last):\nKeyError: 'x'\nray.exceptions.UserCodeException: UDF failed\n"
    assert user_error(ray_task_error(UserCodeException("UDF failed"), bug)) is None


def test_bugs_keep_their_traceback():
    assert user_error(ray_task_error(ValueError("a bug"))) is None
    assert user_error(ValueError("a bug")) is None
    assert user_error(OSError("not inside Ray: unchanged")) is None
    assert user_error(CPRecError("plain")) == "plain"


def test_user_error_does_not_import_ray():
    code = (
        "import sys; from cprec.core.cli import user_error; from cprec.core.errors import CPRecError; "
        "assert user_error(ValueError('x')) is None and user_error(CPRecError('y')) == 'y'; "
        "assert 'ray' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@dataclass
class Options:
    k: int = option(5, help="a number")
    names: list[str] = option([], help="names")


@pytest.fixture
def command(monkeypatch):
    """`cprec try` with Options; its handler raises what `raised` holds."""
    raised: list[BaseException] = []

    def handler(config: Options, _args: argparse.Namespace) -> int:
        if raised:
            raise raised[0]
        return 0

    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="cprec")
        add_config_command(parser.add_subparsers(dest="stage"), "try", Options, handler, help="a test command")
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    return raised


def test_main_prints_one_line_for_a_remote_error(command, capsys):
    command.append(ray_task_error(CPRecError("cannot read /data/Books.jsonl.gz: Truncated compressed stream")))
    assert main(["try"]) == 2
    assert capsys.readouterr().err == "cprec: error: cannot read /data/Books.jsonl.gz: Truncated compressed stream\n"
    command[0] = ray_task_error(KeyError("a bug"))
    with pytest.raises(KeyError):
        main(["try"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("k=[1,", "override 'k=[1,' is not valid: while parsing a flow node: did not find expected node content"),
        ("names=[{format: x", "override 'names=[{format: x' is not valid: while parsing a flow mapping"),
        ("k=!!float abc", "override 'k=!!float abc' is not valid: could not convert string to float"),
        ("k=${oops", "override 'k=${oops' is not valid: no viable alternative"),
    ],
)
def test_main_malformed_override_is_one_line(command, capsys, override, message):
    assert main(["try", "k=3", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cprec: error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"k: [1,\n", "is not valid YAML: while parsing a flow node: expected the node content, but found"),
        (b"names:\n  - {a: 1\n", "is not valid YAML: while parsing a flow mapping: expected ',' or '}'"),
        (b"k: !!float abc\n", "is not valid YAML: could not convert string to float"),
        (b"\xff\xfek: 1\n", "cannot read config file"),
    ],
)
def test_main_malformed_config_file_is_one_line(command, capsys, tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(text)
    assert main(["try", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cprec: error: ") and message in err and err.count("\n") == 1
