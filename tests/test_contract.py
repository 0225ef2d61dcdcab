"""The model contract in cgan.runtime.contract: metadata, stages, noise and pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cgan.runtime import contract
from cgan.runtime.contract import Key, ModelInfo, parse_stage, parse_stages, read_metadata
from cgan.runtime.errors import ModelError, StageError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _info(**kw) -> ModelInfo:
    base = dict(z_dim=8, num_classes=4, img_size=4, channels=1, stage_names=contract.STAGE_NAMES,
                provenance={Key.TRAINING_DATA: "unit test"})
    base.update(kw)
    return ModelInfo(**base)


def _write_model(path, *, meta: dict[str, str] | None, z_dim=8, img=4, stage_dtype=TensorProto.INT64, out_name="image"):
    """A tiny real ONNX model of contract shape: image = tanh(reshape(z @ W)); stage is an input."""
    w = np.linspace(-1, 1, z_dim * img * img, dtype=np.float32).reshape(z_dim, img * img)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["z", "W"], ["flat"]),
            helper.make_node("Reshape", ["flat", "shape"], ["pre"]),
            helper.make_node("Tanh", ["pre"], [out_name]),
        ],
        "tiny",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", z_dim]),
         helper.make_tensor_value_info("stage", stage_dtype, ["N"])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", 1, img, img])],
        initializer=[helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel()),
                     helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, img, img])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta:
        helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


def test_metadata_round_trip_through_a_real_onnx_file(tmp_path):
    info = _info()
    path = _write_model(tmp_path / "m.onnx", meta=info.to_metadata())
    read = read_metadata(path)
    assert read == info
    assert read.provenance[Key.TRAINING_DATA] == "unit test"


def test_model_without_metadata_is_refused_naming_the_missing_keys(tmp_path):
    path = _write_model(tmp_path / "m.onnx", meta=None)
    with pytest.raises(ModelError) as err:
        read_metadata(path)
    for key in contract.REQUIRED_KEYS:
        assert key in str(err.value)


def test_partial_metadata_names_only_what_is_missing(tmp_path):
    meta = _info().to_metadata()
    del meta[Key.STAGE_NAMES]
    path = _write_model(tmp_path / "m.onnx", meta=meta)
    with pytest.raises(ModelError, match=Key.STAGE_NAMES) as err:
        read_metadata(path)
    assert Key.Z_DIM not in str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        (Key.Z_DIM, "many", "not an integer"),
        (Key.NUM_CLASSES, "0", "cgan.num_classes=0 must be between 1 and 1024"),
        (Key.Z_DIM, str(10**11), "cgan.z_dim=100000000000 must be between 1 and 65536"),
        (Key.IMG_SIZE, str(10**6), "cgan.img_size=1000000 must be between 1 and 16384"),
        (Key.STAGE_NAMES, '["a", "b"]', "list of 4 names"),
        (Key.STAGE_NAMES, "not json", "not valid JSON"),
        (Key.OUTPUT_RANGE, "[1, -1]", "[low, high]"),
        (Key.FORMAT_VERSION, "99", "format '99'"),
    ],
)
def test_bad_metadata_values_are_refused(key, value, fragment):
    meta = _info().to_metadata()
    meta[key] = value
    with pytest.raises(ModelError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        ModelInfo.from_metadata(meta)


def test_inputs_that_break_the_contract_are_refused(tmp_path):
    meta = _info().to_metadata()
    bad_dtype = _write_model(tmp_path / "dtype.onnx", meta=meta, stage_dtype=TensorProto.FLOAT)
    with pytest.raises(ModelError, match="'stage' is tensor\\(float\\)"):
        read_metadata(bad_dtype)
    bad_width = _write_model(tmp_path / "width.onnx", meta=_info(z_dim=16).to_metadata(), z_dim=8)
    with pytest.raises(ModelError, match="z_dim=16"):
        read_metadata(bad_width)
    bad_out = _write_model(tmp_path / "out.onnx", meta=meta, out_name="pixels")
    with pytest.raises(ModelError, match="'image'"):
        read_metadata(bad_out)


def test_missing_and_non_onnx_files_are_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        read_metadata(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        read_metadata(junk)
    good = _write_model(tmp_path / "good.onnx", meta=_info().to_metadata())
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        read_metadata(truncated)


@pytest.mark.parametrize(
    ("token", "stage"),
    [("0", 0), (3, 3), ("mild", 2), ("Mild Dementia", 2), ("very mild", 1), ("VERY-MILD", 1),
     ("non-demented", 0), ("Non Demented", 0), ("moderate", 3), ("stage3", 3)],
)
def test_parse_stage_accepts_numbers_and_names(token, stage):
    assert parse_stage(token) == stage


@pytest.mark.parametrize("token", ["4", "-1", "severe", "", "1.5"])
def test_parse_stage_refuses_unknown_stages(token):
    with pytest.raises(StageError):
        parse_stage(token)


def test_parse_stages_lists():
    assert parse_stages("all") == [0, 1, 2, 3]
    assert parse_stages("mild, 0,mild") == [2, 0]
    with pytest.raises(StageError):
        parse_stages(" , ")


def test_uint8_mapping_rounds_and_clips():
    x = np.array([-1.5, -1.0, 0.0, 1.0 / 127.5 * 0.49, 1.0, 2.0], dtype=np.float32)
    got = contract.to_uint8(x)
    expected = np.clip(np.round((x.astype(np.float64) + 1) * 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(got, expected)
    assert got[0] == 0 and got[-1] == 255
    back = contract.from_uint8(np.array([0, 255], dtype=np.uint8))
    np.testing.assert_allclose(back, [-1.0, 1.0])


def test_uint8_mapping_of_a_batch_equals_the_float32_formula_value_for_value():
    """The in-place mapping gives what the plain float32 expression gives, on a model-sized batch and on grey-level boundaries."""
    rng = np.random.default_rng(7)
    x = (rng.random((8, 1, 32, 32), dtype=np.float32) * 2.4 - 1.2).astype(np.float32)
    x[0, 0, 0, :6] = (np.arange(6, dtype=np.float32) + 0.5) / np.float32(127.5) - 1  # exact half steps
    expected = np.clip(np.rint((x - np.float32(-1.0)) * np.float32(127.5)), 0, 255).astype(np.uint8)
    got = contract.to_uint8(x)
    assert got.dtype == np.uint8 and got.shape == x.shape
    np.testing.assert_array_equal(got, expected)
    assert x.min() < -1 and x.max() > 1  # both clips exercised
    np.testing.assert_array_equal(contract.to_uint8(x.astype(np.float64)), expected)


def test_metadata_json_is_what_other_runtimes_read():
    meta = _info().to_metadata()
    assert json.loads(meta[Key.STAGE_NAMES]) == list(contract.STAGE_NAMES)
    assert all(isinstance(v, str) for v in meta.values())
