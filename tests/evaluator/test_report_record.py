"""The evaluation record (results.py) and the report and charts rendered from it (report.py), on
hand-made records: nothing is evaluated here."""

from __future__ import annotations

import json
import re

import pytest

from cprec.core.errors import CPRecError
from cprec.evaluator import report as report_module
from cprec.evaluator.report import chart, method_styles, render_report
from cprec.evaluator.results import (
    LLM_KINDS,
    DatasetResult,
    MethodKey,
    MethodResult,
    Protocol,
    Results,
    Significance,
    method_identity,
)

# `cprec run`'s twelve methods: three baselines, then each pre-trained model zero-shot and fine-tuned.
RECIPE = [
    ("Popularity", "popularity", "", False),
    ("Content (TF-IDF)", "content", "", False),
    ("SASRec", "sasrec", "", False),
    ("Base zero-shot", "llm", "Base", False),
    ("Base + SFT", "sft", "Base", True),
    ("CPRec zero-shot", "llm", "CPRec", False),
    ("CPRec + SFT", "sft", "CPRec", True),
    ("CPT domain-only zero-shot", "llm", "CPT domain-only", False),
    ("CPT domain-only + SFT", "sft", "CPT domain-only", True),
    ("CPT cosine zero-shot", "llm", "CPT cosine", False),
    ("CPT constant zero-shot", "llm", "CPT constant", False),
    ("Format control zero-shot", "llm", "Format control", False),
]
DATASETS = ["Office_Products", "Pet_Supplies", "Garden_and_Outdoor", "Arts_Crafts_and_Sewing", "Online_Retail"]


def method(label: str, kind: str, base: str, fine_tuned: bool, score: float) -> MethodResult:
    means = {"hr@10": min(2 * score, 1.0), "ndcg@10": score, "mrr": score * 0.8}
    llm = kind in LLM_KINDS
    return MethodResult(
        label=label,
        kind=kind,
        base=base,
        fine_tuned=fine_tuned,
        variant="mean" if llm else "",
        variant_selected_on="valid ndcg@10" if llm else "fixed",
        valid=dict(means),
        test=dict(means),
        test_ci={name: (value * 0.7, min(value * 1.3, 1.0)) for name, value in means.items()},
        variants={form: {"valid": means, "test": means} for form in ("sum", "mean")} if llm else {},
        info={"model": "m"} if llm else {},
        seconds={"fit": 1.5, "total": 2.0},
    )


def record(datasets: list[str] = DATASETS, recipe: list[tuple] = RECIPE) -> Results:
    entries = {}
    for d, name in enumerate(datasets):
        methods = {
            label: method(label, kind, base, tuned, 0.05 + 0.03 * ((i + d) % 12))
            for i, (label, kind, base, tuned) in enumerate(recipe)
        }
        significance = {}
        for metric in ("hr@10", "ndcg@10", "mrr"):
            best = max(methods, key=lambda label: methods[label].test[metric])
            significance[metric] = Significance(best, {label: 0.01 for label in methods if label != best})
        entries[name] = DatasetResult(
            name=name,
            platform="retail" if name == "Online_Retail" else "marketplace",
            domain=name,
            stats={"users": 300, "items": 190, "events": 5000},
            users_evaluated=40,
            methods=methods,
            significance=significance,
        )
    protocol = Protocol(
        kind="full",
        label="full ranking over the whole catalogue",
        negatives=None,
        mask_history=True,
        ties="expected",
        ks=[10],
        select_metric="ndcg@10",
        test="wilcoxon",
        alpha=0.05,
        bootstrap=100,
    )
    return Results("2026-12-01T00:00:00+00:00", "1", protocol, {"seed": 0}, entries)


def test_the_record_round_trips_through_results_json(tmp_path):
    results = record()
    uri = str(tmp_path / "results.json")
    results.save(uri)
    assert Results.load(uri) == results
    on_disk = json.loads((tmp_path / "results.json").read_text())
    entry = on_disk["datasets"]["Pet_Supplies"]
    assert list(entry["methods"]) == [label for label, *_ in RECIPE]  # the readable layout, labels as keys
    assert entry["methods"]["CPRec + SFT"]["base"] == "CPRec" and entry["methods"]["CPRec + SFT"]["fine_tuned"]
    assert entry["methods"]["SASRec"]["base"] == "" and entry["methods"]["SASRec"]["test_ci"]["ndcg@10"][0] >= 0
    assert entry["significance"]["ndcg@10"]["best"] in entry["methods"]


def test_methods_are_found_by_what_they_are():
    results = record(recipe=[*RECIPE[:3], ("ours", "llm", "CPRec", False), ("ours, tuned", "sft", "CPRec", True)])
    assert results.method("Pet_Supplies", MethodKey("CPRec")).label == "ours"
    assert results.method("Pet_Supplies", MethodKey("CPRec", fine_tuned=True)).label == "ours, tuned"
    assert results.method("Pet_Supplies", MethodKey(kind="sasrec")).label == "SASRec"
    assert results.method("Pet_Supplies", MethodKey("Base")) is None
    assert results.method("no such dataset", MethodKey("CPRec")) is None
    assert [m.label for m in results.methods()][-2:] == ["ours", "ours, tuned"]
    with pytest.raises(ValueError):
        MethodKey("CPRec", kind="sasrec")


def test_an_old_record_gets_base_and_fine_tuned_from_its_labels(tmp_path):
    raw = record(recipe=[*RECIPE, ("sft", "sft", "sft", True)]).to_dict()
    for entry in raw["datasets"].values():
        for fields in entry["methods"].values():
            del fields["base"], fields["fine_tuned"]
    (tmp_path / "results.json").write_text(json.dumps(raw))
    loaded = Results.load(str(tmp_path / "results.json"))
    identities = {m.label: (m.base, m.fine_tuned) for m in loaded.methods()}
    assert identities == {label: (base, tuned) for label, _, base, tuned in [*RECIPE, ("sft", "sft", "sft", True)]}
    assert (
        loaded.method("Online_Retail", MethodKey("CPT domain-only", fine_tuned=True)).label == "CPT domain-only + SFT"
    )


def test_a_configured_base_wins_over_the_label():
    assert method_identity("my model", "llm", base="CPRec") == ("CPRec", False)
    assert method_identity("my model", "sft", base="CPRec") == ("CPRec", True)
    assert method_identity("tuned per dataset", "llm", base="CPRec", fine_tuned=True) == ("CPRec", True)
    assert method_identity("Popularity", "popularity", base="ignored") == ("", False)


def test_a_file_that_is_no_record_fails_in_one_line(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"datasets": {}}))
    with pytest.raises(CPRecError, match="not an evaluation record"):
        Results.load(str(tmp_path / "results.json"))
    with pytest.raises(CPRecError, match="no results.json"):
        render_report(str(tmp_path / "nothing"))


def styled(recipe: list[tuple]) -> dict:
    return method_styles([method(label, kind, base, tuned, 0.1) for label, kind, base, tuned in recipe])


def many_models(count: int) -> list[tuple]:
    models = [(f"M{i} zero-shot", "llm", f"M{i}", False) for i in range(count)]
    return RECIPE[:3] + models + [(f"M{i} + SFT", "sft", f"M{i}", True) for i in range(count)]


def test_every_method_of_the_recipe_has_its_own_colour_and_look():
    styles = styled(RECIPE)
    assert len({s.face for s in styles.values()}) == len(RECIPE) == 12
    assert len({(s.face, s.hatch, s.marker) for s in styles.values()}) == 12
    for label in ("Popularity", "Content (TF-IDF)", "SASRec"):  # baselines: grey and hatched
        face = styles[label].face
        assert face[1:3] == face[3:5] == face[5:7] and styles[label].hatch
    for base in ("Base", "CPRec", "CPT domain-only"):  # one hue per model: zero-shot light, + SFT dark
        zero_shot, tuned = styles[f"{base} zero-shot"], styles[f"{base} + SFT"]
        assert zero_shot.edge == tuned.edge == tuned.face != zero_shot.face
        assert zero_shot.marker == tuned.marker
        assert lightness(zero_shot.face) > lightness(tuned.face)


def lightness(colour: str) -> int:
    return sum(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def test_styles_stay_distinct_for_many_models():
    styles = styled(many_models(14))  # every hue of the palette: 31 methods, 31 colours
    assert len({s.face for s in styles.values()}) == len(styles) == 31
    styles = styled(many_models(30))  # beyond it a hue comes back, with another hatch and marker
    assert len({(s.face, s.hatch, s.marker) for s in styles.values()}) == len(styles) == 63


def test_the_report_links_its_charts_and_draws_them(tmp_path, monkeypatch):
    results = record()
    results.save(str(tmp_path / "results.json"))
    render_report(str(tmp_path))
    report = (tmp_path / "report.md").read_text()
    assert "| CPRec + SFT | mean |" in report and "[95% CI]" in report
    assert re.findall(r"!\[[^]]*\]\((test_\w+\.png)\)", report) == ["test_ndcg10.png", "test_hr10.png"]
    for name in ("test_ndcg10.png", "test_hr10.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    # 60 bars would be a wall: a dot-plot panel per dataset instead; a few methods stay grouped bars
    drawn = []
    for name in ("bar_chart", "dot_chart"):
        draw = getattr(report_module, name)
        monkeypatch.setattr(report_module, name, lambda *args, draw=draw, name=name: drawn.append(name) or draw(*args))
    few = record(DATASETS[:2], RECIPE[:3])
    for shown in (results, few):
        assert chart(shown, "ndcg@10", method_styles(shown.methods()))[:4] == b"\x89PNG"
    assert drawn == ["dot_chart", "bar_chart"]
