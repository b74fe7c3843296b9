"""examples/small-world: a world.json written by hand over made-up records in the real layouts (Amazon
Reviews 2023 JSONL for pre-training and one downstream dataset, RecBole atomic files for the other;
docs/world.md). The suite's end-to-end `cprec run` goes through it, as a user's own data would."""

from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "small-world"
HAND_WRITTEN_WORLD = EXAMPLE / "world.json"
