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
        return self.run_group([(name, configure)], lambda configs: [produce(c) for c in configs])[0]

    def run_group(
        self,
        stages: list[tuple[str, Callable[[str], Any]]],
        produce_all: Callable[[list[Any]], Any],
    ) -> list[StageResult]:
        """Several stages produced by one call, `produce_all(configs of the stages not yet finished)`:
        training runs that share a Ray Train worker group. Each stage keeps its own digest, directory
        and marker; when every stage is finished, `produce_all` is not called."""
        planned = []
        for name, configure in stages:
            path, digest = self.path_for(name, configure(PLACEHOLDER))
            planned.append((name, path, digest, configure(path)))
        pending = [p for p in planned if not storage.exists(storage.join(p[1], STAGE_FILE))]
        pending_paths = {path for _, path, _, _ in pending}
        for name, path, _, _ in planned:
            action = "running ->" if path in pending_paths else "reusing"
            print(f"[cprec run] {name}: {action} {path}", flush=True)
        seconds = 0.0
        if pending:
            started = time.perf_counter()
            produce_all([config for *_, config in pending])
            seconds = time.perf_counter() - started
            for name, path, digest, config in pending:
                record = {
                    "name": name,
                    "digest": digest,
                    "seconds": round(seconds / len(pending), 1),
                    "group": [p[0] for p in pending] if len(pending) > 1 else [],
                    "config": to_dict(config),
                }
                storage.write_text(storage.join(path, STAGE_FILE), json.dumps(record, indent=2, default=str))
            label = (
                pending[0][0] if len(pending) == 1 else f"{len(pending)} stages ({', '.join(p[0] for p in pending)})"
            )
            print(f"[cprec run] {label}: done in {seconds:.0f}s", flush=True)
        results = []
        for name, path, digest, _ in planned:
            done_now = path in pending_paths
            result = StageResult(name, path, digest, not done_now, seconds / len(pending) if done_now else 0.0)
            self.results.append(result)
            results.append(result)
        return results

    def manifest(self) -> dict:
        return {
            r.name: {"path": r.path, "digest": r.digest, "reused": r.reused, "seconds": round(r.seconds, 1)}
            for r in self.results
        }
