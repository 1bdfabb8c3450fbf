"""The committed backbone ONNX files (models/backbones): integrity, I/O contract, pretrained.

These run with onnxruntime + numpy only (onnx for the graph checks), as CI has no torch. The
"pretrained, not random-init" evidence is the manifest's reference statistics: the export
recorded summary statistics of every output on a fixed synthetic input, after checking the
full classifier on natural images; the committed graph must reproduce them. Tests at the end
rebuild the extractors from the weight packages and need torch (skipped without it).
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cache
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import REPO_ROOT

BACKBONE_DIR = REPO_ROOT / "models" / "backbones"
MANIFEST = json.loads((BACKBONE_DIR / "manifest.json").read_text())
NAMES = list(MANIFEST["backbones"])
OUTPUT_NAMES = ["s8_block", "s8_expand", "s16_block", "s16_expand"]
STRIDES = {"s8_block": 8, "s8_expand": 8, "s16_block": 16, "s16_expand": 16}


def entry(name: str) -> dict[str, Any]:
    return MANIFEST["backbones"][name]


@cache
def session(name: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    path = BACKBONE_DIR / entry(name)["onnx"]["file"]
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def reference_input(shape: tuple[int, int, int, int]) -> np.ndarray:
    """Same expression as inspector.fitting.export.backbones.reference_input (checked by sha256)."""
    n, c, h, w = shape
    y, x, ch = np.ogrid[0:h, 0:w, 0:c]
    ramps = (3 * x + 2 * y + 85 * ch) % 256
    checker = 64 * ((x // 16 + y // 16) % 2)
    img = ((ramps + checker).astype(np.float32) / np.float32(160.0)) - np.float32(1.0)
    return np.ascontiguousarray(np.broadcast_to(img.transpose(2, 0, 1), (n, c, h, w)))


def test_required_backbones_and_no_stray_files() -> None:
    assert {"mobilenet_v2", "efficientnet_lite0"} <= set(NAMES)
    listed = {entry(n)["onnx"]["file"] for n in NAMES}
    assert {p.name for p in BACKBONE_DIR.glob("*.onnx")} == listed
    total = sum((BACKBONE_DIR / f).stat().st_size for f in listed)
    assert total < 40e6, "committed ONNX should stay under ~40 MB"


@pytest.mark.parametrize("name", NAMES)
def test_file_matches_manifest_sha256(name: str) -> None:
    onnx_info = entry(name)["onnx"]
    data = (BACKBONE_DIR / onnx_info["file"]).read_bytes()
    assert len(data) == onnx_info["size_bytes"]
    assert hashlib.sha256(data).hexdigest() == onnx_info["sha256"]


@pytest.mark.parametrize("name", NAMES)
def test_manifest_documents_the_contract(name: str) -> None:
    e = entry(name)
    assert e["name"] == name
    assert e["onnx"]["opset"] >= 17
    assert e["input"]["name"] == "image" and e["input"]["channel_order"] == "RGB"
    assert [o["name"] for o in e["outputs"]] == OUTPUT_NAMES
    assert all(o["stride"] == STRIDES[o["name"]] and o["layer"] for o in e["outputs"])
    norm = e["normalisation"]
    for scale, factor in (("on_0_1_scale", 1.0), ("on_0_255_scale", 255.0)):
        assert len(norm[scale]["mean"]) == len(norm[scale]["std"]) == 3
        if name == "mobilenet_v2":  # torchvision ImageNet convention
            np.testing.assert_allclose(
                norm[scale]["mean"], np.array([0.485, 0.456, 0.406]) * factor, rtol=1e-7
            )
            np.testing.assert_allclose(
                norm[scale]["std"], np.array([0.229, 0.224, 0.225]) * factor, rtol=1e-7
            )
        else:  # TF EfficientNet-Lite: (x - 127) / 128 on 0..255
            np.testing.assert_allclose(norm[scale]["mean"], [127 / 255 * factor] * 3, rtol=1e-7)
            np.testing.assert_allclose(norm[scale]["std"], [128 / 255 * factor] * 3, rtol=1e-7)
    for key in ("package", "version", "weights_file", "weights_sha256"):
        assert e["source"][key]
    assert e["source"]["license_as_stated_by_package"]
    assert e["rebuild_command"].endswith(f"--only {name}")
    assert "--no-deps" in e["rebuild_command"]


@pytest.mark.parametrize("name", NAMES)
def test_export_checks_were_recorded_and_passed(name: str) -> None:
    e = entry(name)
    images = {i["image"]: i for i in e["pretrained_check"]["images"]}
    cat = images["skimage.data.chelsea()"]
    assert 281 <= cat["top5"][0]["class"] <= 285, "the cat must be classified as a cat"
    assert all(i["passed"] for i in images.values() if "rule" in i)
    stem = e["pretrained_check"]["normalisation_check"]["stem_bn_median_abs_log_var_ratio"]
    assert stem["documented"] < stem["other"]
    diffs = e["torch_vs_onnxruntime"]
    assert len({tuple(d["input_shape"][2:]) for d in diffs}) >= 2
    for d in diffs:
        assert max(d["max_abs_diff_over_max_abs_value"].values()) < 1e-4
    assert e["onnx"]["byte_identical_on_re_export"] is True


@pytest.mark.parametrize("name", NAMES)
def test_graph_structure(name: str) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(BACKBONE_DIR / entry(name)["onnx"]["file"]))
    onnx.checker.check_model(model)
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset == entry(name)["onnx"]["opset"] >= 17
    (inp,) = model.graph.input
    assert inp.name == "image"
    dims = inp.type.tensor_type.shape.dim
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    assert [o.name for o in model.graph.output] == OUTPUT_NAMES
    # no classifier and no unused weights: every initializer feeds some node
    used = {i for n in model.graph.node for i in n.input}
    assert all(t.name in used for t in model.graph.initializer)
    assert not any(n.op_type in ("Gemm", "MatMul", "GlobalAveragePool") for n in model.graph.node)
    assert {p.key: p.value for p in model.metadata_props}["backbone"] == name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 3, 256, 256), (2, 3, 320, 224), (1, 3, 250, 199)])
def test_dynamic_batch_height_width(name: str, shape: tuple[int, int, int, int]) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape, dtype=np.float32)
    sess = session(name)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    outs = dict(zip(OUTPUT_NAMES, sess.run(OUTPUT_NAMES, {"image": x}), strict=True))
    channels = {o["name"]: o["channels"] for o in entry(name)["outputs"]}
    n, _, h, w = shape
    for out, arr in outs.items():
        s = STRIDES[out]
        assert arr.shape == (n, channels[out], math.ceil(h / s), math.ceil(w / s)), out
        assert arr.dtype == np.float32
        assert np.isfinite(arr).all(), out
        if out.endswith("_expand"):  # post-ReLU6
            assert arr.min() >= 0.0 and arr.max() <= 6.0, out
    if n > 1:  # batch items are independent: each equals its own single-image run
        for i in range(n):
            single = sess.run(OUTPUT_NAMES, {"image": x[i : i + 1]})
            for out, arr in zip(OUTPUT_NAMES, single, strict=True):
                np.testing.assert_allclose(outs[out][i : i + 1], arr, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_outputs_match_pretrained_reference_statistics(name: str) -> None:
    ref = entry(name)["reference"]
    x = reference_input(tuple(ref["input"]["shape"]))
    assert hashlib.sha256(x.tobytes()).hexdigest() == ref["input"]["sha256_float32"]
    outs = session(name).run(OUTPUT_NAMES, {"image": x})
    for out, arr in zip(OUTPUT_NAMES, outs, strict=True):
        want = ref["outputs"][out]
        a = arr.astype(np.float64)
        scale = want["std"]
        assert list(a.shape) == want["shape"]
        assert abs(a.mean() - want["mean"]) <= 1e-3 * scale, out
        assert abs(a.std() - want["std"]) <= 1e-3 * scale, out
        assert abs(a.min() - want["min"]) <= 1e-3 * scale + 1e-5, out
        assert abs(a.max() - want["max"]) <= 1e-3 * scale + 1e-5, out
        assert abs((arr == 0).mean() - want["fraction_zero"]) <= 1e-3, out
        ch = a.mean(axis=(0, 2, 3))[: len(want["channel_means_first16"])]
        np.testing.assert_allclose(
            ch, want["channel_means_first16"], rtol=0, atol=1e-3 * scale + 1e-5, err_msg=out
        )


# ---------------------------------------------------------------- torch (export extra) only


@pytest.mark.parametrize("name", NAMES)
def test_torch_rebuild_matches_committed_onnx(name: str) -> None:
    """The architecture code + weight package reproduce the committed graph's outputs."""
    torch = pytest.importorskip("torch")
    from inspector.fitting.export import backbones

    bb = backbones.BACKBONES[name]
    try:
        state, _ = backbones.load_weights(bb)
    except Exception as exc:  # weight package not installed in this environment
        pytest.skip(f"{bb.package}: {exc}")
    model = bb.build()
    model.load_state_dict(state, strict=True)
    extractor = bb.features(model.eval()).eval()
    x = backbones.reference_input()
    assert (
        hashlib.sha256(x.tobytes()).hexdigest()
        == entry(name)["reference"]["input"]["sha256_float32"]
    )
    with torch.no_grad():
        ref = [t.numpy() for t in extractor(torch.from_numpy(x))]
    got = session(name).run(OUTPUT_NAMES, {"image": x})
    for out, r, g in zip(OUTPUT_NAMES, ref, got, strict=True):
        assert np.abs(r - g).max() <= 1e-4 * max(1.0, float(np.abs(r).max())), out


@pytest.mark.parametrize("index", [0, 1, 2])
def test_lite_architecture_matches_reference_implementation(index: int) -> None:
    """Our EfficientNet-Lite equals the efficientnet_lite_pytorch package's, if installed."""
    torch = pytest.importorskip("torch")
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    from inspector.fitting.export import backbones

    bb = backbones.BACKBONES[f"efficientnet_lite{index}"]
    try:
        state, _ = backbones.load_weights(bb)
    except Exception as exc:
        pytest.skip(f"{bb.package}: {exc}")
    ours = bb.build()
    ours.load_state_dict(state, strict=True)
    theirs = ref_pkg.EfficientNet.from_name(f"efficientnet-lite{index}")
    theirs.load_state_dict(state, strict=True)
    # their padding is fixed for the native size, so compare there
    x = torch.randn(2, 3, bb.resolution, bb.resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)
