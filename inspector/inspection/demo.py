"""``inspector demo``: the whole appliance on bundled data, with nothing to configure.

Two cameras: the synthetic part generator (a labeled camera: part ids say
``good-…`` or the defect type) and a replay of ``sample_images/test``. The model
is ``models/demo``, fitted on ``sample_images/train/good`` and calibrated on the
labeled ``sample_images/test``; rebuild it with::

    inspector fit --images sample_images/train/good --out models/demo --name demo
    inspector calibrate models/demo --images sample_images/test/good --defects sample_images/test
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspector.config import Config, parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO_ROOT / "models" / "demo"


def demo_config(store: Path, port: int | None = None) -> Config:
    data: dict[str, Any] = {
        "cameras": [
            {"id": "synthetic", "type": "synthetic", "seed": 7, "width": 256, "height": 256,
             "defect_rate": 0.25, "fps": 8},
            # A test set is mostly defects: no typical good part for the drift alarm.
            {"id": "replay", "type": "folder", "path": str(REPO_ROOT / "sample_images" / "test"),
             "fps": 4, "drift_alarm": False},
        ],
        "model": {"path": str(DEMO_MODEL)},
        "storage": {"root": str(store.resolve())},
    }
    if port is not None:
        data["web"] = {"port": port}  # 0: any free port
    return parse_config(data, base_dir=REPO_ROOT, source="demo defaults")
