"""The run report under an s3:// out_dir: its pre-training section and curves are written there too."""

import json

from cprec.core import storage
from cprec.pipeline import report


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
