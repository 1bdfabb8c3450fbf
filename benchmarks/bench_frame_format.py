"""How much keeping frames as JPEG instead of PNG moves a fitted model's scores.

Refits learn from the store's kept frames and shadow runs score them, while the line
scores the frames the camera sent. For each MVTec-layout set: one ``fit`` with the default
options, then every test image (up to ``--max-test`` of each class) scored raw and after
an encode/decode round trip as the store writes it (``storage.frame_format``). Reported
per format: the mean and largest score shift as a share of the model's gap between the
median good score and its threshold, the verdicts that flip, and image AUROC.

    python benchmarks/bench_frame_format.py --sets mvtec_bottle_512 magnetic_tile
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from inspector.evaluation import roc_auc
from inspector.fitting import FitOptions, fit
from inspector.imaging import list_images, read_image
from inspector.model import Detector
from inspector.store.images import FRAME_FORMATS

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def round_trip(image: np.ndarray, frame_format: str) -> np.ndarray:
    suffix, params = FRAME_FORMATS[frame_format]
    ok, data = cv2.imencode(suffix, image, params)
    assert ok, f"cannot encode {frame_format}"
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def measure(folder: Path, max_test: int, work: Path) -> list[str]:
    fit(list_images(folder / "train/good"), work / folder.name, FitOptions(threads=2))
    detector = Detector.open(work / folder.name, threads=2, providers=("cpu",))
    rng = np.random.default_rng(0)

    def sample(paths: list[Path]) -> list[Path]:
        keep = rng.choice(len(paths), min(max_test, len(paths)), replace=False)
        return [paths[i] for i in sorted(keep)]

    goods = sample(list_images(folder / "test/good"))
    defects = sample([p for d in sorted((folder / "test").iterdir())
                      if d.is_dir() and d.name != "good" for p in list_images(d)])
    images = [read_image(p) for p in goods + defects]
    labels = np.array([False] * len(goods) + [True] * len(defects))
    raw = np.array([detector.predict(image).score for image in images])
    gap = detector.threshold - float(np.median(raw[~labels]))
    rows = []
    for frame_format in sorted(FRAME_FORMATS):
        kept = np.array([detector.predict(round_trip(image, frame_format)).score
                         for image in images])
        shift = np.abs(kept - raw) / gap
        flips = (kept >= detector.threshold) != (raw >= detector.threshold)
        rows.append(f"| {folder.name} | {frame_format} | {len(goods)} / {len(defects)} | "
                    f"{shift.mean():.3f} | {shift.max():.3f} | {flips[~labels].sum()} / "
                    f"{flips[labels].sum()} | {roc_auc(labels, raw):.4f} -> "
                    f"{roc_auc(labels, kept):.4f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATASETS)
    parser.add_argument("--sets", nargs="+", default=["mvtec_bottle_512", "magnetic_tile"])
    parser.add_argument("--max-test", type=int, default=150, help="images of each class")
    args = parser.parse_args()
    print("| set | kept as | good / defect images | mean shift / gap | largest shift / gap | "
          "flips good / defect | AUROC raw -> kept |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            for row in measure(args.data / name, args.max_test, Path(tmp)):
                print(row, flush=True)


if __name__ == "__main__":
    main()
