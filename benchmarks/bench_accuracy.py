"""Detector accuracy over every dataset: one fit with the defaults and one eval per set.

For every MVTec-layout folder under ``--data`` (``../shared/datasets`` by default): fit
on ``train/good`` with the default options, evaluate on ``test/``, and print one table
beside a plain PatchCore's figures from the datasets README, with the mean and the
worst set. Defaults are judged by the mean and the worst case over all sets, never
by one set.

    python benchmarks/bench_accuracy.py                          # every set, defaults
    python benchmarks/bench_accuracy.py --sets kolektorsdd       # one set
    python benchmarks/bench_accuracy.py --option top_fraction=1e-5 --option max_bank=100000
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from inspector.evaluation import evaluate
from inspector.fitting import FitOptions, fit
from inspector.imaging import list_images

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets"

# A plain PatchCore (256x256, stride-8/16 features, 10% greedy coreset, k=1, image score
# = max of the smoothed map) from ../shared/datasets/README.md: image AUROC and pixel
# AUROC (None without masks) per backbone.
REFERENCE: dict[str, dict[str, tuple[float, float | None]]] = {
    "mvtec_bottle_512": {"mobilenet_v2": (1.000, None), "efficientnet_lite0": (1.000, None)},
    "magnetic_tile": {"mobilenet_v2": (0.842, 0.790), "efficientnet_lite0": (0.911, 0.800),
                      "efficientnet_lite2": (0.936, 0.809)},
    "kolektorsdd": {"mobilenet_v2": (0.811, 0.812), "efficientnet_lite0": (0.825, 0.850)},
    "mvtec_screw": {"mobilenet_v2": (0.939, None), "efficientnet_lite0": (0.949, None)},
}
REFERENCE_BACKBONE = "efficientnet_lite0"  # the mean target compares like with like


def datasets(root: Path, names: list[str] | None) -> list[Path]:
    found = sorted(p for p in root.iterdir() if (p / "train" / "good").is_dir()
                   and (p / "test" / "good").is_dir())
    if names:
        missing = set(names) - {p.name for p in found}
        if missing:
            sys.exit(f"no such dataset under {root}: {', '.join(sorted(missing))}")
        found = [p for p in found if p.name in names]
    return found


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` for one FitOptions field; the value as a Python literal when it is one."""
    key, sep, raw = text.partition("=")
    fields = {f.name for f in dataclasses.fields(FitOptions)}
    if not sep or key not in fields:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY one of {sorted(fields)}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def run_set(folder: Path, options: FitOptions, work: Path) -> dict[str, Any]:
    images = list_images(folder / "train" / "good")
    started = time.perf_counter()
    fitted = fit(images, work / folder.name, options)
    fit_seconds = time.perf_counter() - started
    result = evaluate(work / folder.name, folder, threads=options.threads)
    return {
        "set": folder.name, "train_images": len(images), "fit_s": round(fit_seconds, 1),
        "hyperparameters": fitted.card.hyperparameters,
        **{k: result[k] for k in ("image_auroc", "pixel_auroc", "pro", "f1", "precision",
                                  "recall", "fp", "tn", "ms_per_image", "images", "defective")},
    }


def reference(name: str) -> tuple[tuple[float, float | None], tuple[float, float | None]]:
    """(best plain backbone, the reference backbone) figures for one set."""
    figures = REFERENCE.get(name, {})
    if not figures:
        return (float("nan"), None), (float("nan"), None)
    best_image = max(v[0] for v in figures.values())
    pixels = [v[1] for v in figures.values() if v[1] is not None]
    return (best_image, max(pixels) if pixels else None), figures[REFERENCE_BACKBONE]


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | image AUROC | ref. best / Lite0 | pixel AUROC | ref. best | PRO | F1 | "
        "precision / recall | false rejects | ms/image | fit s (images) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        (best, best_pixel), (lite0, _) = reference(r["set"])
        lines.append(
            f"| {r['set']} | **{_f(r['image_auroc'])}** | {_f(best)} / {_f(lite0)} | "
            f"{_f(r['pixel_auroc'])} | {_f(best_pixel)} | {_f(r['pro'])} | {_f(r['f1'])} | "
            f"{_f(r['precision'])} / {_f(r['recall'])} | {r['fp']}/{r['fp'] + r['tn']} | "
            f"{r['ms_per_image']:.1f} | "
            f"{r['fit_s']:.1f} ({r['train_images']}) |")
    image = [r["image_auroc"] for r in rows]
    ref_mean = [reference(r["set"])[1][0] for r in rows]
    worst = min(rows, key=lambda r: r["image_auroc"] - reference(r["set"])[0][0])
    lines += [
        "",
        f"- mean image AUROC {sum(image) / len(image):.3f}; plain PatchCore "
        f"({REFERENCE_BACKBONE}) mean {sum(ref_mean) / len(ref_mean):.3f}",
        f"- worst set against its best plain backbone: {worst['set']} "
        f"({worst['image_auroc']:.3f} vs {reference(worst['set'])[0][0]:.3f})",
        f"- mean F1 at the fitted threshold {sum(r['f1'] for r in rows) / len(rows):.3f}; "
        f"mean recall {sum(r['recall'] for r in rows) / len(rows):.3f}; false rejects "
        f"{sum(r['fp'] for r in rows)} of {sum(r['fp'] + r['tn'] for r in rows)} good parts",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", nargs="+", help="dataset folder names (default: all)")
    parser.add_argument("--option", type=parse_option, action="append", default=[],
                        metavar="KEY=VALUE", help="override one fit option (repeatable)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    options = FitOptions(threads=args.threads, **dict(args.option))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in datasets(args.data, args.sets):
            row = run_set(folder, options, Path(tmp))
            rows.append(row)
            print(f"{row['set']}: image AUROC {row['image_auroc']:.3f}, pixel "
                  f"{_f(row['pixel_auroc'])}, F1 {row['f1']:.3f}, fit {row['fit_s']} s",
                  file=sys.stderr, flush=True)
    print(f"options: {dict(args.option) or 'defaults'}\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"options": dict(args.option), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
