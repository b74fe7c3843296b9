"""The run report: which comparisons it makes, and its training curves under an s3:// out_dir."""

import json

from cprec.core import storage
from cprec.evaluator.results import DatasetResult, MethodResult
from cprec.pipeline import report


def dataset_with(methods: dict[str, tuple[str, str, bool]]) -> DatasetResult:
    """A dataset whose methods are label -> (kind, base, fine_tuned); their scores do not matter here."""
    entry = DatasetResult("Toys", "marketplace", "Toys", {}, 10)
    for label, (kind, base, fine_tuned) in methods.items():
        entry.methods[label] = MethodResult(
            label=label,
            kind=kind,
            base=base,
            fine_tuned=fine_tuned,
            variant="",
            variant_selected_on="fixed",
            valid={},
            test={},
            test_ci={},
        )
    return entry


def test_the_comparisons_select_methods_by_what_they_are():
    entry = dataset_with(
        {
            "Popularity": ("popularity", "", False),
            "pop-2": ("content", "", False),  # any label: the kind says it is the content baseline
            "Base zero-shot": ("llm", "Base", False),
            "ours": ("llm", "CPRec", False),
            "ours tuned": ("sft", "CPRec", True),
            "CPT cosine zero-shot": ("llm", "CPT cosine", False),
            "CPT domain-only + SFT": ("sft", "CPT domain-only", True),
        }
    )
    assert report.comparisons(entry) == [
        ("CPT helps zero-shot", "ours", "Base zero-shot"),  # no Base + SFT: no fine-tuned comparison
        ("CPRec + SFT vs Popularity", "ours tuned", "Popularity"),
        ("CPRec + SFT vs pop-2", "ours tuned", "pop-2"),
        ("ablation: CPT cosine", "ours", "CPT cosine zero-shot"),
        ("ablation after SFT: CPT domain-only", "ours tuned", "CPT domain-only + SFT"),
    ]
    assert report.comparisons(dataset_with({"Popularity": ("popularity", "", False)})) == []


def test_the_training_curves_are_drawn_on_object_storage(s3, tmp_path):
    root = f"{s3.bucket('report')}/{tmp_path.name}"
    records = [{"step": 1, "lr": 1e-3, "loss": 3.0, "val_loss": 3.2}, {"step": 2, "lr": 5e-4, "loss": 2.5}]
    fs, path = storage.filesystem(f"{root}/cpt-0123/metrics.jsonl")
    with fs.open_output_stream(path) as stream:
        stream.write("".join(json.dumps(r) + "\n" for r in records).encode())
    lines = report._training_section(root, {"cpt": f"{root}/cpt-0123"})
    assert "![training and validation loss](loss_curves.png)" in lines
    assert "| cpt | 2 | – | 3.000 | 2.500 | 3.200 |" in lines
    assert storage.exists(f"{root}/loss_curves.png") and storage.exists(f"{root}/lr_schedules.png")
