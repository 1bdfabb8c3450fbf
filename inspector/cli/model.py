"""The model commands of the ``inspector`` CLI: fit, calibrate, eval, predict, quantize."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The ``inspector fit`` options that are ``FitOptions`` fields of the same name.
_FIT_OPTIONS = ("backbone", "layers", "method", "size", "keep_aspect", "seed", "coreset_ratio",
                "max_bank", "dims", "search_dims", "candidates", "search_block", "top_fraction",
                "auto", "tile", "tile_overlap", "name")


class _FitDefault:
    """An option's default, read from ``FitOptions`` only when help shows it: importing the
    fitting code (onnx, about a second) to build the parser would slow every command."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        from inspector.fitting import FitOptions

        return str(getattr(FitOptions(), self.name))


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options the user gave; the rest keep ``FitOptions``' defaults."""
    return {name: tuple(value) if isinstance(value, list) else value
            for name in names if not isinstance(value := getattr(args, name), _FitDefault)}


def add_model_commands(commands: Any) -> None:
    defaults = argparse.Namespace(
        **{name: _FitDefault(name) for name in (*_FIT_OPTIONS, "quantile", "margin")})
    fit = commands.add_parser("fit", help="fit a model from good images (MVTec-AD train/good)")
    fit.add_argument("--images", type=Path, required=True, help="folder of good images")
    fit.add_argument("--out", type=Path, required=True, help="model folder to write")
    fit.add_argument("--backbone", default=defaults.backbone)
    fit.add_argument("--layers", nargs="+", default=defaults.layers, metavar="LAYER",
                     help="backbone outputs the features come from (models/backbones/"
                     "manifest.json lists each backbone's)")
    fit.add_argument("--method", choices=["patchcore", "padim"], default=defaults.method)
    fit.add_argument("--size", type=int, default=defaults.size,
                     help="model input side, pixels (default: the frames' shorter side, "
                     "within 256 to 320)")
    fit.add_argument("--keep-aspect", action=argparse.BooleanOptionalAction,
                     default=defaults.keep_aspect,
                     help="shape the model input like the training frames (--size: shorter side)")
    fit.add_argument("--seed", type=int, default=defaults.seed)
    fit.add_argument("--coreset-ratio", type=float, default=defaults.coreset_ratio)
    fit.add_argument("--max-bank", type=int, default=defaults.max_bank,
                     help="cap on memory-bank entries (speed)")
    fit.add_argument("--dims", type=int, default=defaults.dims, help="projected feature size")
    fit.add_argument("--search-dims", type=int, default=defaults.search_dims,
                     help="nearest-neighbour search on this many leading dims, then exact")
    fit.add_argument("--candidates", type=int, default=defaults.candidates,
                     help="entries per patch whose exact distance is measured")
    fit.add_argument("--search-block", type=int, default=defaults.search_block,
                     help="search candidates once per block of this many patches a side")
    fit.add_argument("--top-fraction", type=float, default=defaults.top_fraction,
                     help="image score: mean of this share of the highest map pixels "
                     "(default: chosen on synthetic defects)")
    fit.add_argument("--auto", action=argparse.BooleanOptionalAction, default=defaults.auto,
                     help="choose what is not given on synthetic defects (--no-auto: fixed "
                     "defaults)")
    fit.add_argument("--tile", type=int, default=defaults.tile,
                     help="inspect frames as tiles of this many pixels")
    fit.add_argument("--tile-overlap", type=int, default=defaults.tile_overlap)
    fit.add_argument("--name", default=defaults.name)
    fit.add_argument("--threads", type=int, default=0, help="0: all cores")
    fit.set_defaults(handler=_fit)

    calibrate = commands.add_parser("calibrate", help="choose and store a model's threshold")
    calibrate.add_argument("model", type=Path)
    calibrate.add_argument("--images", type=Path, required=True, help="good validation images")
    calibrate.add_argument("--defects", type=Path,
                           help="labeled defective images (folder, or folder of type folders): "
                           "the threshold becomes F1-optimal")
    calibrate.add_argument("--quantile", type=float, default=defaults.quantile)
    calibrate.add_argument("--margin", type=float, default=defaults.margin,
                           help="good-only rule: quantile + MARGIN x (quantile - median) "
                           "(default %(default)s)")
    calibrate.add_argument("--threads", type=int, default=0)
    calibrate.set_defaults(handler=_calibrate)

    evaluate = commands.add_parser("eval", help="evaluate on an MVTec-AD-layout category folder")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--json", type=Path, help="write the metrics here")
    evaluate.add_argument("--report", type=Path, help="write a visual report (HTML + PNG) here")
    evaluate.add_argument("--threads", type=int, default=0)
    evaluate.set_defaults(handler=_eval)

    predict = commands.add_parser("predict", help="score images; writes a heatmap next to each")
    predict.add_argument("--model", type=Path, required=True)
    predict.add_argument("images", type=Path, nargs="+")
    predict.add_argument("--no-overlay", action="store_true", help="do not write overlays")
    predict.add_argument("--threads", type=int, default=0)
    predict.set_defaults(handler=_predict)

    quantize = commands.add_parser("quantize", help="int8 copy of a fitted model's backbone")
    quantize.add_argument("model", type=Path)
    quantize.add_argument("--images", type=Path, required=True, help="calibration images (good)")
    quantize.add_argument("--out", type=Path, required=True)
    quantize.add_argument("--max-images", type=int, default=32)
    quantize.set_defaults(handler=_quantize)


def _progress() -> bool:
    return sys.stderr.isatty()


def _fit(args: argparse.Namespace) -> int:
    from inspector.fitting import FitOptions, fit
    from inspector.imaging import list_images

    try:
        options = FitOptions(**_given(args, *_FIT_OPTIONS), threads=args.threads)
    except ValueError as exc:
        print(f"inspector fit: {exc}", file=sys.stderr)
        return 2
    result = fit(list_images(args.images), args.out, options, progress=_progress())
    card = result.card
    print(json.dumps({
        "model": str(args.out), "method": card.method, "backbone": card.backbone["name"],
        "images": card.training.count, "bank_size": card.hyperparameters.get("bank_size"),
        "threshold": card.threshold.value, "fit_seconds": round(result.seconds["total"], 2),
        "input": list(card.input.size),
        "frames_shrunk": card.hyperparameters.get("frames_shrunk"),
        "top_fraction": card.hyperparameters["top_fraction"],
        "selection": card.hyperparameters["selection"],
        "onnx_sha256": card.onnx_sha256,
    }))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from inspector.evaluation import calibrate, defect_images
    from inspector.fitting import FitOptions
    from inspector.imaging import list_images

    defects = defect_images(args.defects) if args.defects else []
    defaults = FitOptions()
    rule = {"quantile": defaults.quantile, "margin": defaults.margin,
            **_given(args, "quantile", "margin")}
    card = calibrate(args.model, list_images(args.images), defects, rule["quantile"],
                     rule["margin"], args.threads, _progress())
    print(json.dumps({"model": str(args.model), **card.threshold.model_dump(mode="json")}))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from inspector.evaluation import evaluate

    result = evaluate(args.model, args.data, args.report, args.threads, _progress())
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    if args.report:
        print(f"report: {args.report / 'index.html'}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    import cv2

    from inspector.errors import InspectorError
    from inspector.imaging import heatmap_overlay, read_image
    from inspector.model import Detector

    detector = Detector.open(args.model, threads=args.threads)
    failed = 0
    for path in args.images:
        try:
            frame = read_image(path)
            prediction = detector.predict(frame)
        except InspectorError as exc:
            print(json.dumps({"image": str(path), "error": str(exc)}))
            failed += 1
            continue
        line = {"image": str(path), "verdict": prediction.verdict, "score": prediction.score,
                "threshold": prediction.threshold, "display_score": prediction.display_score}
        if not args.no_overlay:
            scale = detector.card.score_scale
            overlay = heatmap_overlay(frame, prediction.anomaly_map, scale.low, scale.high)
            target = path.with_name(f"{path.stem}.heatmap.png")
            cv2.imwrite(str(target), overlay)
            line["overlay"] = str(target)
        print(json.dumps(line))
    return 1 if failed else 0


def _quantize(args: argparse.Namespace) -> int:
    from inspector.fitting import quantize_model
    from inspector.imaging import list_images

    card = quantize_model(args.model, list_images(args.images)[: args.max_images], args.out)
    print(json.dumps({"model": str(args.out), "onnx_sha256": card.onnx_sha256,
                      "quantization": card.hyperparameters.get("quantization")}))
    return 0
