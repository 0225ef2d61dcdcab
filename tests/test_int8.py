"""cgan-export --int8: the exact ConvTranspose rewrite, the fidelity bar before writing, the runtime reading the result."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from _models import model_file
from cgan.export.card import card_path_for
from cgan.export.errors import ValidationError
from cgan.export.int8 import INT8_MAE_KEY, INT8_PSNR_KEY, QUANT_KEY, SOURCE_SHA_KEY, FidelityError, stage_feeds
from cgan.export.int8_export import export_int8
from cgan.export.rewrite import rewrite_for_int8, upsample_kernel
from cgan.runtime import load
from cgan.runtime.contract import REQUIRED_KEYS, Key, ModelInfo, read_metadata
from conftest import stderr_lines, torch_loaded


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _info(path) -> ModelInfo:
    return read_metadata(path)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    """gen32 quantized once for the module, on a smaller calibration set (fast)."""
    src = model_file("gen32")
    out = tmp_path_factory.mktemp("int8") / "gen32_int8.onnx"
    report = export_int8(src, out, calibration=stage_feeds(_info(src), 16, seed=5))
    return src, out, report


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("relu", [False, True])
def test_rewrite_of_one_upsampling_layer_is_exact_on_random_weights(batch, relu):
    rng = np.random.default_rng(batch + 10 * relu)
    cin, cout, h = 5, 3, 6
    weight = rng.standard_normal((cin, cout, 4, 4)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y0" if relu else "y"], name="up",
                              strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[4, 4])]
    if relu:
        nodes.append(helper.make_node("Relu", ["y0"], ["y"], name="act"))
    graph = helper.make_graph(
        nodes, "one_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, h, h])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", cout, 2 * h, 2 * h])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten, report = rewrite_for_int8(model)
    assert report.to_conv == ("up",) and not report.kept
    assert "ConvTranspose" not in {n.op_type for n in rewritten.graph.node}
    x = rng.standard_normal((batch, cin, h, h)).astype(np.float32)
    (want,) = _session(model).run(None, {"x": x})
    (got,) = _session(rewritten).run(None, {"x": x})
    assert got.shape == want.shape == (batch, cout, 2 * h, 2 * h)
    assert np.abs(got - want).max() <= 1e-5


def test_rewrite_is_exact_on_a_random_generator_every_stage_and_batch_size():
    model = onnx.load(model_file("gen32"))
    rewritten, report = rewrite_for_int8(model)
    assert len(report.to_conv) == 3 and len(report.to_matmul) == 1 and not report.kept
    ops = {n.op_type for n in rewritten.graph.node}
    assert "ConvTranspose" not in ops and {"Conv", "DepthToSpace", "Slice", "Gemm"} <= ops
    ref, new = _session(model), _session(rewritten)
    rng = np.random.default_rng(3)
    for n in (1, 7, 64):
        for stage in range(4):
            feed = {"z": rng.standard_normal((n, 100), dtype=np.float32), "stage": np.full(n, stage, dtype=np.int64)}
            (want,) = ref.run(None, feed)
            (got,) = new.run(None, feed)
            assert np.abs(got - want).max() <= 1e-5, (n, stage)
            assert np.ptp(want) > 0.5  # the weights make images that span the range: the check is not vacuous


def _wrong_kernel(weight: np.ndarray) -> np.ndarray:
    """The right layout with the two kernel taps of each phase swapped: a plausible off-by-one."""
    return upsample_kernel(weight)[:, :, ::-1, ::-1].copy()


def test_a_wrong_rewrite_is_caught_and_nothing_is_written(tmp_path):
    out = tmp_path / "wrong.onnx"
    with pytest.raises(ValidationError, match="rewrite changed the fp32 model's output"):
        export_int8(model_file("gen32"), out, kernel=_wrong_kernel)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_calibration_set_that_cannot_succeed_is_refused_and_the_old_file_kept(tmp_path):
    out = tmp_path / "gen_int8.onnx"
    out.write_bytes(b"previous")
    info = _info(model_file("gen32"))
    # Zero noise: the calibrated ranges only cover four images, one per stage, far narrower than real inputs.
    cannot = [(np.zeros((8, info.z_dim), dtype=np.float32), np.arange(8, dtype=np.int64) % 4)]
    with pytest.raises(FidelityError, match="no int8 model meets the bar") as exc:
        export_int8(model_file("gen32"), out, calibration=cannot)
    assert "Nothing was written" in str(exc.value)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen_int8.onnx"]


def test_int8_model_round_trips_through_load_with_its_metadata(int8_export):
    src, out, report = int8_export
    gen = load(out)
    info = gen.info
    assert info.precision == "int8"
    meta = info.to_metadata()
    assert all(k in meta for k in REQUIRED_KEYS)
    quant = json.loads(info.provenance[QUANT_KEY])
    assert quant["calibration"]["images"] == 64 and quant["calibration"]["stages"] == [0, 1, 2, 3]
    assert quant["fp32_layers"] == list(report.fp32_layers)
    assert len(quant["psnr_db_per_stage"]) == 4
    assert float(info.provenance[INT8_PSNR_KEY]) >= 40 and float(info.provenance[INT8_MAE_KEY]) <= 1.5
    assert len(info.provenance[SOURCE_SHA_KEY]) == 64
    assert info.provenance[Key.TRAINING_DATA] == load(src).info.provenance[Key.TRAINING_DATA]
    model = onnx.load(out)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "ConvTranspose" not in ops
    # The runtime's images: as the bar says, close to the fp32 model's, image for image.
    fp32 = load(src).generate(stage="mild", n=8, seed=4).astype(np.int16)
    int8 = gen.generate(stage="mild", n=8, seed=4).astype(np.int16)
    assert np.abs(int8 - fp32).mean() <= 1.5
    card = card_path_for(out).read_text()  # beside the model, named after it (never a README.md of the user's)
    assert not (out.parent / "README.md").exists()
    assert "int8" in card and f"{report.fidelity.worst_psnr_db:.2f}" in card


def test_cli_quantizes_an_onnx_model_without_torch_and_cgan_run_uses_it(int8_export, script, tmp_path):
    out = tmp_path / "cli_int8.onnx"
    res = script("cgan-export", "--int8", str(model_file("gen32")), "--out", str(out), "--no-card", block_torch=True)
    assert res.returncode == 0, res.stderr
    assert not torch_loaded(res)
    assert "against the fp32 model: PSNR" in res.stdout and out.is_file()
    run = script("cgan-run", "--model", str(out), "--n", "2", "--stage", "0", "--out", str(tmp_path / "png"), block_torch=True)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["stage0_seed0_00000000.png", "stage0_seed0_00000001.png"]


def test_cli_refuses_fp16_with_int8_in_one_line(script, tmp_path):
    res = script("cgan-export", "--int8", "--fp16", str(model_file("gen32")), "--out", str(tmp_path / "x.onnx"))
    assert res.returncode == 1
    assert stderr_lines(res)[-1].endswith("--fp16 and --int8 exclude each other; choose one")
    assert list(tmp_path.iterdir()) == []
