"""The shipped `cprec run` presets: each loads, the others extend `default` and state only what they
change, CPRec's data mixture is stated in none of them (it is the trainer's default), and `large` and
`smoke` resolve to the stage configs they resolved to before they extended `default` (BEFORE), except
for the differences meant (MEANT). No stage runs here.

When you change `large` or `smoke` on purpose, change BEFORE (or MEANT) with it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from cprec.core.config import layered, load_config, to_dict
from cprec.core.errors import CPRecError
from cprec.pipeline.presets import PRESET_DIR, load_preset, preset_names
from cprec.trainer.config import PHASES, MixtureConfig, TrainConfig

SHIPPED = {"smoke", "default", "text-world", "medium", "large", "cluster"}
CPREC_MIXTURE = {
    "warmup": {"domain": 0.45, "mixed": 0.45, "catalog": 0.1},
    "stable": {"domain": 0.45, "mixed": 0.45, "catalog": 0.1},
    "annealing": {"domain": 0.0, "mixed": 0.9, "catalog": 0.1},
}
# The fine-tuning options of a preset's `sft` section, with the defaults they had as `sft_datasets`,
# `sft_limit` and the evaluator's `eval.sft` (block_len, max_items, valid_fraction, epochs).
SFT_DEFAULTS = {"datasets": [], "limit": 0, "epochs": 0.0, "block_len": 256, "max_items": 50, "valid_fraction": 0.05}
ONLY_DOMAIN = {"domain": 1.0, "mixed": 0.0, "catalog": 0.0}  # what the evaluator's SFT drew, before
FIXED = {"data_dir": "d", "output_dir": "o"}  # paths a stage fills in
SECTIONS = ("synth", "data", "control", "train", "base", "cpt", "variants", "eval", "sft", "sft_datasets", "sft_limit")

# `large` and `smoke` as they were before they extended `default` (comments dropped), in the format of
# then: `sft` held TrainConfig options, `sft_limit` and `eval.sft` the rest, and a mixture a preset did
# not state was {} (kinds in proportion to their rows).
BEFORE = {
    "smoke": """
synth: {users: 300, items_per_domain: 60, events_per_user: 30, retail_users: 150, retail_items: 80}
data:
  partitions: 4
  task_cpus: 0.5
  progress_bars: false
  tokens: {vocab_size: 1024, block_len: 256}
train:
  tiny: {hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, intermediate_size: 128}
  scaling: {num_workers: 1, cpus_per_worker: 0.5}
  micro_batch_size: 8
  log_every: 10
  eval_every: 0
  checkpoint: {every: 1000}
base:
  steps: 20
  schedule:
    peak_lr: 3.0e-3
    mixture:
      warmup: {domain: 0.0, mixed: 0.0, catalog: 1.0}
      stable: {domain: 0.0, mixed: 0.0, catalog: 1.0}
      annealing: {domain: 0.0, mixed: 0.0, catalog: 1.0}
cpt:
  steps: 20
  schedule: {peak_lr: 2.0e-3, warmup: 0.1, stable: 0.6, annealing: 0.3, shape: cosine}
control:
  sequences: {scramble: true}
variants:
  - name: CPT domain-only
    sft: true
    train:
      schedule:
        mixture:
          warmup: {domain: 0.9, mixed: 0.0, catalog: 0.1}
          stable: {domain: 0.9, mixed: 0.0, catalog: 0.1}
          annealing: {domain: 0.9, mixed: 0.0, catalog: 0.1}
  - name: Format control
    data: control
sft:
  steps: 8
sft_limit: 1
eval:
  max_users: 24
  bootstrap: 200
  sasrec: {epochs: 6, eval_every: 2, hidden: 32}
  llm: {num_actors: 0}
""",
    "large": """
synth: {users: 6000, retail_users: 3000}
data:
  partitions: 16
  tokens: {vocab_size: 4096, block_len: 512}
control:
  sequences: {scramble: true}
train:
  tiny: {hidden_size: 256, num_layers: 4, num_heads: 4, num_kv_heads: 2, intermediate_size: 768}
  scaling: {num_workers: 1, use_gpu: true, cpus_per_worker: 2}
  micro_batch_size: 32
  log_every: 100
  eval_every: 200
  eval_batches: 4
  checkpoint: {every: 1000}
base:
  steps: 500
  schedule:
    peak_lr: 2.0e-3
    warmup: 0.05
    stable: 0.65
    annealing: 0.3
    mixture:
      warmup: {domain: 0.0, mixed: 0.0, catalog: 1.0}
      stable: {domain: 0.0, mixed: 0.0, catalog: 1.0}
      annealing: {domain: 0.0, mixed: 0.0, catalog: 1.0}
cpt:
  steps: 800
  schedule:
    peak_lr: 1.5e-3
    warmup: 0.05
    stable: 0.65
    annealing: 0.3
    shape: cosine
    mixture:
      warmup: {domain: 0.45, mixed: 0.45, catalog: 0.1}
      stable: {domain: 0.45, mixed: 0.45, catalog: 0.1}
      annealing: {domain: 0.0, mixed: 0.9, catalog: 0.1}
variants:
  - name: CPT domain-only
    train:
      schedule:
        mixture:
          warmup: {domain: 0.9, mixed: 0.0, catalog: 0.1}
          stable: {domain: 0.9, mixed: 0.0, catalog: 0.1}
          annealing: {domain: 0.9, mixed: 0.0, catalog: 0.1}
  - name: CPT cosine
    train:
      schedule: {warmup: 0.05, stable: 0.0, annealing: 0.95, shape: cosine}
  - name: CPT constant
    train:
      schedule: {warmup: 0.05, stable: 0.95, annealing: 0.0}
  - name: Format control
    data: control
sft:
  schedule: {peak_lr: 7.0e-4}
eval:
  sft: {epochs: 1.5}
  max_users: 300
  bootstrap: 500
  sasrec: {epochs: 100}
  llm: {num_actors: 1, cpus_per_actor: 2, batch_size: 1024, max_history: 20}
""",
}


# The world the default preset generates since issue 20 (its profile near real logs'), which the
# presets extending it inherit; `text-world` keeps the SynthConfig defaults they had before.
REALISTIC_WORLD = {
    "pretrain_popularity_skew": 2.5,
    "downstream_popularity_skew": 2.5,
    "taste_weight": 0.7,
    "unwritten_taste": 2.0,
}


def meant_smoke(resolved: dict) -> None:
    # CPRec (and the format control, which trains as CPRec does) now draws CPRec's mixture, the
    # trainer's default, where smoke stated none and drew the kinds in proportion to their rows.
    for name in ("cpt", "variant Format control"):
        resolved["trainings"][name]["schedule"]["mixture"] = copy.deepcopy(CPREC_MIXTURE)
    # The default's, inherited: unused, with no scoring actors (num_actors 0).
    resolved["eval"]["llm"]["cpus_per_actor"] = 0.9
    resolved["synth"].update(REALISTIC_WORLD)
    resolved["eval"]["sasrec"]["loss"] = "ce"  # the default's: SASRec as strong as validation says


def meant_large(resolved: dict) -> None:
    resolved["synth"].update(REALISTIC_WORLD)
    resolved["eval"]["sasrec"]["loss"] = "ce"


MEANT = {"smoke": meant_smoke, "large": meant_large}


def resolve(cls: type, *sections: dict | None) -> dict:
    """A config class's defaults with `sections` layered over them, as a dict (not validated)."""
    merged = OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create(layered(*sections)))
    return to_dict(OmegaConf.to_object(merged))


def training(*sections: dict | None, old: bool = False) -> dict:
    """A training run's TrainConfig, validated; `old`: with the mixture default of then ({})."""
    merged = layered(*sections, FIXED)
    resolved = to_dict(load_config(TrainConfig, base=merged))
    if old:
        stated = (merged.get("schedule") or {}).get("mixture") or {}
        resolved["schedule"]["mixture"] = {phase: stated.get(phase) or {} for phase in PHASES}
    return resolved


def stage_configs(preset: dict, old: bool = False) -> dict:
    """Every stage's config as `cprec run` layers the preset's sections; `old`: a preset in the
    format of BEFORE. Classes are today's for both, so only the presets differ."""
    from cprec.data_prep.build import BuildConfig
    from cprec.data_prep.synth import SynthConfig
    from cprec.evaluator.config import EvalConfig

    p = copy.deepcopy(preset)
    seeded = {"seed": p.get("seed", 0)}
    train = layered(seeded, p.get("train"))
    cpt = layered(train, p.get("cpt"))
    eval_section = dict(p.get("eval") or {})
    if old:
        sft = {**(eval_section.pop("sft", None) or {}), "datasets": p.get("sft_datasets", [])}
        sft["limit"] = p.get("sft_limit", 0)
        sft_run = training({"schedule": {"mixture": dict.fromkeys(PHASES, ONLY_DOMAIN)}}, train, p.get("sft"), old=True)
    else:
        sft = dict(p.get("sft") or {})
        # the recipe draws a fine-tuning's data domain-only, under the preset's `sft.train`
        only_domain = {"schedule": {"mixture": dict.fromkeys(PHASES, ONLY_DOMAIN)}}
        sft_run = training(train, only_domain, sft.pop("train", None))
    unknown = set(sft) - set(SFT_DEFAULTS)
    assert not unknown, f"unknown fine-tuning options {unknown}"
    resolved = {
        "synth": resolve(SynthConfig, p.get("synth"), {"out_dir": "o"}),
        "data": resolve(BuildConfig, p.get("data"), {"world": "w.json"}),
        "control": resolve(BuildConfig, p.get("data"), p.get("control"), {"world": "w.json"}),
        "eval": resolve(EvalConfig, seeded, eval_section, {"world": "w.json"}),
        "sft": {**SFT_DEFAULTS, **sft},
        "trainings": {"base": training(train, p.get("base"), old=old), "cpt": training(cpt, old=old), "sft": sft_run},
        "variants": [],
        "rest": {k: v for k, v in p.items() if k not in SECTIONS},
    }
    for variant in p.get("variants") or []:
        resolved["trainings"][f"variant {variant['name']}"] = training(cpt, variant.get("train"), old=old)
        resolved["variants"].append(
            {"name": variant["name"], "data": variant.get("data", "main"), "sft": variant.get("sft", False)}
        )
    return resolved


def raw(name: str) -> dict:
    return yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_loads(name):
    from cprec.pipeline.config import RunConfig

    preset = load_preset(name)
    load_config(RunConfig, base=preset)
    resolved = stage_configs(preset)  # every training run validated, the fine-tuning options known
    assert set(resolved["trainings"]) >= {"base", "cpt", "sft"}


def test_the_presets_are_shipped_and_extend_the_default():
    assert SHIPPED <= set(preset_names())
    assert {name: raw(name).get("extends") for name in SHIPPED - {"default"}} == dict.fromkeys(
        SHIPPED - {"default"}, "default"
    )


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_large_and_smoke_resolve_as_before_but_for_what_was_meant(name):
    expected = stage_configs(yaml.safe_load(BEFORE[name]), old=True)
    MEANT[name](expected)
    assert stage_configs(load_preset(name)) == expected


def test_the_cprec_mixture_is_the_trainers_default_and_in_no_preset():
    assert to_dict(MixtureConfig()) == CPREC_MIXTURE
    assert TrainConfig().schedule.mixture == MixtureConfig()

    def mixtures(node: Any):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "mixture" and isinstance(value, dict):
                    yield value
                yield from mixtures(value)
        elif isinstance(node, list):
            for value in node:
                yield from mixtures(value)

    def shares(phase: dict) -> dict:
        return {kind: share for kind, share in phase.items() if share}

    cprec = {phase: shares(CPREC_MIXTURE[phase]) for phase in PHASES}
    for name in preset_names():
        text = (PRESET_DIR / f"{name}.yaml").read_text()
        assert "0.45" not in text and ".45" not in text, name
        for mixture in mixtures(raw(name)):
            assert [p for p in PHASES if p in mixture and shares(mixture[p]) == cprec[p]] == [], name


@pytest.mark.parametrize("name", preset_names())
def test_base_reads_catalogue_text_and_fine_tuning_domain_documents_only(name):
    # A fine-tuning corpus has only tokens/train/domain: with CPRec's mixture as the default, the
    # recipe draws it domain-only (recipe.sft_section); the base model is the stand-in for a general LLM, catalogue text and no behaviour.
    trainings = stage_configs(load_preset(name))["trainings"]
    for phase in PHASES:
        assert trainings["sft"]["schedule"]["mixture"][phase] == ONLY_DOMAIN, (name, phase)
        assert trainings["base"]["schedule"]["mixture"][phase] == {"domain": 0.0, "mixed": 0.0, "catalog": 1.0}
        assert trainings["cpt"]["schedule"]["mixture"][phase] == CPREC_MIXTURE[phase], (name, phase)


def test_variants_by_name_change_or_drop_the_parents(tmp_path):
    def preset(text: str) -> dict:
        path = tmp_path / "child.yaml"
        path.write_text(text)
        return load_preset(str(path))

    parent = [v["name"] for v in load_preset("default")["variants"]]
    child = preset("extends: default\nvariants: {CPT cosine: null, CPT domain-only: {sft: false, data: control}}\n")
    assert [v["name"] for v in child["variants"]] == [n for n in parent if n != "CPT cosine"]
    changed = child["variants"][0]
    assert changed["name"] == "CPT domain-only" and changed["sft"] is False and changed["data"] == "control"
    assert changed["train"] == load_preset("default")["variants"][0]["train"]
    assert [v["name"] for v in preset("extends: default\nvariants: [{name: only}]\n")["variants"]] == ["only"]
    with pytest.raises(CPRecError, match=r"\['CPT cosnie'\], which 'default' does not have"):
        preset("extends: default\nvariants: {CPT cosnie: null}\n")
    with pytest.raises(CPRecError, match="extends none"):
        preset("variants: {CPT cosine: null}\n")
    with pytest.raises(CPRecError, match="mapping of changes"):
        preset("extends: default\nvariants: {CPT cosine: 3}\n")


def test_the_default_world_is_more_skewed_and_less_wordy_than_text_world():
    """The default's synth settings do what its comments say, at test size: items far more unequally
    chosen, and consecutive choices that share fewer attribute words, than in `text-world` (the
    SynthConfig defaults)."""
    import numpy as np

    from cprec.data_prep import synth

    def profile(settings: dict) -> tuple[float, float]:
        sizes = {"users": 400, "items_per_domain": 60, "events_per_user": 20, "retail_users": 60, "retail_items": 40}
        world = synth.generate(synth.SynthConfig(out_dir="unused", **{**settings, **sizes}))
        events, catalogs = world.market_events, world.catalogs
        counts = np.sort(np.bincount(events["item"], minlength=sum(c.size for c in catalogs)))
        n = len(counts)
        gini = float((2 * np.arange(1, n + 1) - n - 1) @ counts / (n * counts.sum()))
        order = np.lexsort((events["timestamp"], events["user"]))
        user, attributes = events["user"][order], np.concatenate([c.attributes for c in catalogs])[events["item"][order]]
        same_user = user[1:] == user[:-1]
        agreement = float((attributes[1:] == attributes[:-1])[same_user].mean())
        return gini, agreement

    default, text_world = load_preset("default")["synth"], load_preset("text-world")["synth"]
    assert {k: default[k] for k in REALISTIC_WORLD} == REALISTIC_WORLD
    assert text_world == {**default, **{k: getattr(synth.SynthConfig(out_dir="unused"), k) for k in REALISTIC_WORLD}}
    default_gini, default_agreement = profile(default)
    text_gini, text_agreement = profile(text_world)
    assert default_gini > text_gini + 0.15, (default_gini, text_gini)
    assert default_agreement < text_agreement - 0.1, (default_agreement, text_agreement)
