"""The evaluation's record, `results.json`, as typed objects (docs/design.md §7).

`evaluate` builds a `Results` and saves it; the reports and the claims load it. On disk it stays
the readable JSON it always was: `datasets -> <name> -> methods -> <label> -> {kind, base,
fine_tuned, variant, valid, test, test_ci, ...}`. Methods are found by what they are, a `MethodKey`
(the pre-trained model an LLM method stands for and whether it was fine-tuned, or a baseline's
kind), never by their labels, which are only names for people.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cprec.core import storage
from cprec.core.errors import CPRecError

RESULTS_FILE = "results.json"
LLM_KINDS = ("llm", "sft")
# The labels `cprec run` gives its LLM methods; records written before `base` and `fine_tuned`
# existed are read through them.
ZERO_SHOT_SUFFIX = " zero-shot"
SFT_SUFFIX = " + SFT"


def method_identity(label: str, kind: str, base: str = "", fine_tuned: bool = False) -> tuple[str, bool]:
    """(base, fine_tuned) of a method. Baselines have neither; an sft method is fine-tuned by
    definition. Where no base is named (a record from before these fields, or a config naming none),
    both come from the label: "X zero-shot" -> (X, False), "X + SFT" -> (X, True), any other label
    is its own base."""
    if kind not in LLM_KINDS:
        return "", False
    if base:
        return base, fine_tuned or kind == "sft"
    if label.endswith(SFT_SUFFIX):
        return label.removesuffix(SFT_SUFFIX), True
    return label.removesuffix(ZERO_SHOT_SUFFIX), fine_tuned or kind == "sft"


@dataclass(frozen=True)
class MethodKey:
    """What a method is, whatever its label: an LLM method by its pre-trained model (`base`) and
    whether it was fine-tuned; a baseline by its `kind`. `MethodKey("CPRec", fine_tuned=True)`,
    `MethodKey(kind="sasrec")`."""

    base: str = ""
    fine_tuned: bool = False
    kind: str = ""

    def __post_init__(self) -> None:
        if bool(self.base) == bool(self.kind):
            raise ValueError(f"a MethodKey names a base model or a baseline kind, not both or neither: {self}")
        if self.kind and self.fine_tuned:
            raise ValueError(f"baseline {self.kind!r} cannot be fine-tuned")

    def __str__(self) -> str:
        if self.kind:
            return self.kind
        return self.base + (SFT_SUFFIX if self.fine_tuned else ZERO_SHOT_SUFFIX)


@dataclass
class Protocol:
    """How every method was ranked and compared; the same for all datasets."""

    kind: str
    label: str
    negatives: int | None
    mask_history: bool
    ties: str
    ks: list[int]
    select_metric: str
    test: str
    alpha: float
    bootstrap: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Protocol:
        return cls(**{**raw, "ks": list(raw["ks"])})


@dataclass
class MethodResult:
    """One method on one dataset: test and validation means of its chosen variant, the test
    metrics' 95% bootstrap intervals, every variant's means, what it reported and how long it took."""

    label: str
    kind: str
    base: str
    fine_tuned: bool
    variant: str
    variant_selected_on: str
    valid: dict[str, float]
    test: dict[str, float]
    test_ci: dict[str, tuple[float, float]]
    # variant -> split -> metric -> mean; {} for a method without variants
    variants: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> MethodKey:
        return MethodKey(self.base, self.fine_tuned) if self.base else MethodKey(kind=self.kind)

    @property
    def is_baseline(self) -> bool:
        return self.kind not in LLM_KINDS

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "base": self.base,
            "fine_tuned": self.fine_tuned,
            "variant": self.variant,
            "variant_selected_on": self.variant_selected_on,
            "valid": dict(self.valid),
            "test": dict(self.test),
            "test_ci": {name: [low, high] for name, (low, high) in self.test_ci.items()},
            "variants": self.variants,
            "info": self.info,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, label: str, raw: dict) -> MethodResult:
        base, fine_tuned = method_identity(label, raw["kind"], raw.get("base", ""), raw.get("fine_tuned", False))
        return cls(
            label=label,
            kind=raw["kind"],
            base=base,
            fine_tuned=fine_tuned,
            variant=raw["variant"],
            variant_selected_on=raw["variant_selected_on"],
            valid=dict(raw["valid"]),
            test=dict(raw["test"]),
            test_ci={name: (low, high) for name, (low, high) in raw["test_ci"].items()},
            variants=raw.get("variants", {}),
            info=raw.get("info", {}),
            seconds=raw.get("seconds", {}),
        )


@dataclass
class Significance:
    """One test metric: the best method's label and every other method's paired-test p-value against it."""

    best: str
    p_values: dict[str, float]

    def p_value(self, label: str) -> float:
        """1.0 for the best method itself."""
        return self.p_values.get(label, 1.0)


@dataclass
class DatasetResult:
    name: str
    platform: str
    domain: str
    stats: dict[str, Any]
    users_evaluated: int
    users_without_enough_negatives: int = 0
    # label -> result, in the order the methods were configured
    methods: dict[str, MethodResult] = field(default_factory=dict)
    # test metric -> its best method and p-values; {} when no method ran here
    significance: dict[str, Significance] = field(default_factory=dict)

    def method(self, key: MethodKey) -> MethodResult | None:
        """The method that is `key` (the first configured, if several are); None if none ran here."""
        return next((m for m in self.methods.values() if m.key == key), None)

    def to_dict(self) -> dict:
        return {
            "platform": self.platform,
            "domain": self.domain,
            "stats": self.stats,
            "users_evaluated": self.users_evaluated,
            "users_without_enough_negatives": self.users_without_enough_negatives,
            "methods": {label: method.to_dict() for label, method in self.methods.items()},
            "significance": {
                metric: dataclasses.asdict(s) for metric, s in self.significance.items()
            },
        }

    @classmethod
    def from_dict(cls, name: str, raw: dict) -> DatasetResult:
        return cls(
            name=name,
            platform=raw["platform"],
            domain=raw["domain"],
            stats=raw["stats"],
            users_evaluated=raw["users_evaluated"],
            users_without_enough_negatives=raw.get("users_without_enough_negatives", 0),
            methods={label: MethodResult.from_dict(label, m) for label, m in raw["methods"].items()},
            significance={
                metric: Significance(s["best"], dict(s["p_values"])) for metric, s in raw["significance"].items()
            },
        )


@dataclass
class Results:
    created: str
    template_version: str
    protocol: Protocol
    config: dict[str, Any]
    # dataset name -> its result, in the order the datasets were evaluated
    datasets: dict[str, DatasetResult] = field(default_factory=dict)

    def method(self, dataset: str, key: MethodKey) -> MethodResult | None:
        """The method that is `key` on `dataset`; None where it did not run there."""
        entry = self.datasets.get(dataset)
        return entry.method(key) if entry else None

    def methods(self) -> list[MethodResult]:
        """Every method of any dataset, once each (its first dataset's result), in configured order."""
        seen: dict[str, MethodResult] = {}
        for entry in self.datasets.values():
            for label, method in entry.methods.items():
                seen.setdefault(label, method)
        return list(seen.values())

    def to_dict(self) -> dict:
        return {
            "created": self.created,
            "template_version": self.template_version,
            "protocol": self.protocol.to_dict(),
            "config": self.config,
            "datasets": {name: entry.to_dict() for name, entry in self.datasets.items()},
        }

    @classmethod
    def from_dict(cls, raw: dict) -> Results:
        return cls(
            created=raw["created"],
            template_version=raw["template_version"],
            protocol=Protocol.from_dict(raw["protocol"]),
            config=raw.get("config", {}),
            datasets={name: DatasetResult.from_dict(name, entry) for name, entry in raw["datasets"].items()},
        )

    def save(self, uri: str) -> None:
        storage.write_json(uri, self.to_dict())

    @classmethod
    def load(cls, uri: str) -> Results:
        """The record at `uri` (a results.json, local or object storage)."""
        if not storage.exists(uri):
            raise CPRecError(f"no {RESULTS_FILE} at {uri}; run `cprec eval` first")
        raw = storage.read_json(uri, "results file")
        try:
            return cls.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise CPRecError(f"results file {uri} is not an evaluation record ({type(exc).__name__}: {exc})") from exc
