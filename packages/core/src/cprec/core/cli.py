"""The `cprec` command: one subcommand per stage, each registered by the package that owns it.

Stage modules are imported only to register their (cheap) parsers; heavy imports (torch, Ray,
DeepSpeed) happen inside the handlers, so `cprec data ...` works on a node without DeepSpeed.
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import re
import sys
from collections.abc import Callable
from typing import Any

from cprec.core.config import describe, load_config
from cprec.core.errors import CPRecError

# (subcommand, module that registers it, distribution that provides it)
STAGES = [
    ("data", "cprec.data_prep.cli", "cprec-data-prep"),
    ("train", "cprec.trainer.cli", "cprec-trainer"),
    ("model", "cprec.trainer.model_cli", "cprec-trainer"),
    ("eval", "cprec.evaluator.cli", "cprec-evaluator"),
    ("tune", "cprec.pipeline.tune_cli", "cprec-pipeline"),
    ("run", "cprec.pipeline.cli", "cprec-pipeline"),
]


def add_config_command(
    subparsers: Any,
    name: str,
    config_cls: type,
    handler: Callable[[Any, argparse.Namespace], Any],
    help: str,
    description: str = "",
    example: str = "",
    base: Callable[[argparse.Namespace], dict] | None = None,
) -> argparse.ArgumentParser:
    """A subcommand taking `--config FILE` and `key=value` overrides of a config dataclass.

    `base(args)`, when given, supplies a layer under the file (e.g. a preset chosen by a flag the
    caller adds to the returned parser). Its --help lists every option with its type, default and meaning.
    """
    epilog = "options (set in the --config YAML or as key=value overrides):\n" + "\n".join(describe(config_cls))
    if example:
        epilog += f"\n\nexample:\n  {example}"
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML config file (defaults apply where it is silent)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied after the file")

    def run(args: argparse.Namespace) -> Any:
        layer = base(args) if base is not None else None
        return handler(load_config(config_cls, args.config, args.overrides, base=layer), args)

    parser.set_defaults(handler=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cprec",
        description="CPRec: all-domain continual pre-training of language models for recommendation.",
    )
    subparsers = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, module_name, distribution in STAGES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                _register_missing(subparsers, name, distribution)
                continue
            raise
        module.register(subparsers)
    return parser


def _register_missing(subparsers: Any, name: str, distribution: str) -> None:
    parser = subparsers.add_parser(name, help=f"(needs the {distribution} package, not installed)")
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def fail(_args: argparse.Namespace) -> None:
        raise CPRecError(f"`cprec {name}` needs the {distribution} package; install it (see README)")

    parser.set_defaults(handler=fail)


# The last line of a Python traceback: `module.Class: message`.
_EXCEPTION_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*): (?P<message>.*)$", re.MULTILINE)


def user_error(exc: BaseException) -> str | None:
    """The one line `cprec` prints for an error the user can act on; None for a bug (traceback).

    A CPRecError is its message. Ray raises a task's error on the driver as a RayTaskError whose
    text is the whole remote traceback: when its cause is a CPRecError, an OSError or a pyarrow
    error, the line is the cause's first line (a Ray Data UDF's cause is a UserCodeException
    that keeps the original only in the traceback text, so it is read from there).
    """
    ray_exceptions = sys.modules.get("ray.exceptions")  # never import Ray just for this
    if ray_exceptions is None or not isinstance(exc, ray_exceptions.RayError):
        return str(exc) if isinstance(exc, CPRecError) else None
    cause: BaseException = exc
    while isinstance(cause, ray_exceptions.RayError) and getattr(cause, "cause", None) not in (None, cause):
        cause = cause.cause  # type: ignore[attr-defined]
    if not isinstance(cause, ray_exceptions.RayError):
        return _one_line(type(cause).__name__, str(cause)) if _is_user_error_type(type(cause)) else None
    found = [(name, m["message"]) for m in _EXCEPTION_LINE.finditer(str(exc)) if (name := _user_error_name(m["name"]))]
    if not found:
        return None
    # `raise CPRecError(...) from OSError` shows the OSError first: the CPRecError says more.
    return _one_line(*next((f for f in found if f[0] == "CPRecError"), found[0]))


def _is_user_error_type(cls: type) -> bool:
    pyarrow = sys.modules.get("pyarrow")
    return issubclass(cls, (CPRecError, OSError)) or (pyarrow is not None and issubclass(cls, pyarrow.ArrowException))


def _user_error_name(qualified: str) -> str | None:
    """`CPRecError`, a builtin OSError's name or a pyarrow error's, from a traceback's last line."""
    name = qualified.rsplit(".", 1)[-1]
    if qualified in ("CPRecError", "cprec.core.errors.CPRecError"):
        return "CPRecError"
    if "." not in qualified and isinstance(getattr(builtins, name, None), type):
        return name if issubclass(getattr(builtins, name), OSError) else None
    return name if qualified.startswith("pyarrow.") and name.startswith("Arrow") else None


def _one_line(name: str, message: str) -> str:
    lines = message.strip().splitlines()
    first = lines[0] if lines else ""
    if name == "CPRecError":
        return first
    return f"{name}: {first}" if first else name


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except KeyboardInterrupt:
        print("cprec: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        print(f"cprec: error: {message}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
