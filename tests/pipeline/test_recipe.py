"""What the recipe hands each stage, checked without running the stages (they run in test_run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from smallworld import HAND_WRITTEN_WORLD

from cprec.core.cli import main
from cprec.core.config import layered, load_config
from cprec.core.errors import CPRecError
from cprec.pipeline import recipe
from cprec.pipeline.config import RunConfig
from cprec.pipeline.stages import PLACEHOLDER, StageRunner


def downstream_builds(root: Path, monkeypatch, *overrides: str) -> tuple[dict, str]:
    """The build options each downstream dataset's cleaning gets (the splits themselves not made),
    and the downstream stage's directory."""
    import cprec.data_prep.downstream as downstream

    seen = {}
    monkeypatch.setattr(downstream, "prepare_split", lambda spec, build, out: seen.setdefault(spec.name, build))
    config = load_config(RunConfig, overrides=list(overrides))
    datasets = recipe.downstream_stage(StageRunner(str(root)), config, str(HAND_WRITTEN_WORLD))
    assert set(seen) == {d["name"] for d in datasets}
    return seen, str(Path(datasets[0]["split_dir"]).parent)


def test_item_ratings_set_once_reach_the_corpus_and_every_downstream_build(tmp_path, monkeypatch):
    on, on_dir = downstream_builds(tmp_path, monkeypatch, "data.item_ratings=true", "eval.build.cleaning.k_users=3")
    assert all(build == {"cleaning": {"k_users": 3}, "item_ratings": True} for build in on.values())
    off, off_dir = downstream_builds(tmp_path, monkeypatch, "eval.build.cleaning.k_users=3")
    assert all(build == {"cleaning": {"k_users": 3}} for build in off.values())  # the default adds nothing
    assert on_dir != off_dir  # never answered from the other's splits
    # nor the corpus: the option is part of the build config its digest is taken of
    from cprec.data_prep.build import BuildConfig

    runner = StageRunner(str(tmp_path))
    corpus = [
        runner.path_for("data", load_config(BuildConfig, base=layered(section, {"world": "w", "out_dir": PLACEHOLDER})))
        for section in ({"item_ratings": True}, {})
    ]
    assert corpus[0] != corpus[1]
    agreeing = load_config(RunConfig, overrides=["data.item_ratings=true", "eval.build.item_ratings=true"])
    assert agreeing.downstream_build() == {"item_ratings": True}


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.item_ratings=true", "eval.build.item_ratings=false"],
        ["eval.build.item_ratings=true"],
        ["data.item_ratings=true", "control.item_ratings=false"],
    ],
)
def test_differing_item_ratings_are_refused_before_any_stage_runs(tmp_path, capsys, overrides):
    from cprec.pipeline.tune import TuneConfig

    with pytest.raises(CPRecError, match="item_ratings"):
        load_config(RunConfig, overrides=overrides)
    if not overrides[-1].startswith("control."):  # tune has no control corpus
        with pytest.raises(CPRecError, match="item_ratings"):
            load_config(TuneConfig, overrides=overrides)
    assert main(["run", "--preset", "smoke", f"out_dir={tmp_path}", *overrides]) == 2
    assert "differs from data.item_ratings" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # not even the world was generated
