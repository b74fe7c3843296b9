"""Content-addressed stage outputs: a stage whose inputs and config did not change is reused.

Each stage writes into <root>/<name>-<digest>, where the digest covers the stage's config (with
paths under the root written relative to it, so a moved root keeps its cache) and thereby the
directories of the stages it reads, which carry their own digests. A stage is done when its
STAGE_FILE exists; it is written last, so a stage killed half-way runs again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cprec.core import storage
from cprec.core.config import config_digest, to_dict

log = logging.getLogger("cprec.pipeline")
STAGE_FILE = "_STAGE.json"
PLACEHOLDER = "<stage-dir>"


@dataclass
class StageResult:
    name: str
    path: str
    digest: str
    reused: bool
    seconds: float


class StageRunner:
    """`inputs`: a digest of inputs no stage config names by content (a user's own world files);
    it joins every stage's digest."""

    def __init__(self, root: str, inputs: str = ""):
        self.root = root.rstrip("/")
        self.inputs = inputs
        self.results: list[StageResult] = []

    def path_for(self, name: str, config: Any) -> tuple[str, str]:
        storage.safe_name(name, "stage name")
        parts = [name, self._relative(to_dict(config))] + ([self.inputs] if self.inputs else [])
        digest = config_digest(*parts)
        return storage.join(self.root, f"{name}-{digest}"), digest

    def _relative(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(self.root, "<root>")
        if isinstance(value, dict):
            return {k: self._relative(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._relative(v) for v in value]
        return value

    def run(self, name: str, configure: Callable[[str], Any], produce: Callable[[Any], Any]) -> StageResult:
        """Runs `produce(configure(out_dir))` unless this name + config already finished.

        `configure(out_dir)` builds the stage's config for an output directory; the digest is taken
        with a placeholder there, so the directory can be named after the digest.
        """
        path, digest = self.path_for(name, configure(PLACEHOLDER))
        config = configure(path)
        marker = storage.join(path, STAGE_FILE)
        if storage.exists(marker):
            print(f"[cprec run] {name}: reusing {path}", flush=True)
            result = StageResult(name, path, digest, True, 0.0)
        else:
            print(f"[cprec run] {name}: running -> {path}", flush=True)
            started = time.perf_counter()
            produce(config)
            seconds = time.perf_counter() - started
            fs, inner = storage.filesystem(marker)
            fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(inner) as stream:
                record = {"name": name, "digest": digest, "seconds": round(seconds, 1), "config": to_dict(config)}
                stream.write(json.dumps(record, indent=2, default=str).encode())
            print(f"[cprec run] {name}: done in {seconds:.0f}s", flush=True)
            result = StageResult(name, path, digest, False, seconds)
        self.results.append(result)
        return result

    def manifest(self) -> dict:
        return {
            r.name: {"path": r.path, "digest": r.digest, "reused": r.reused, "seconds": round(r.seconds, 1)}
            for r in self.results
        }
