"""The runtime API at its bounds: values kept within the output range, absurd threads and metadata refused at once."""

from __future__ import annotations

import numpy as np
import pytest

from _planted import planted_model
from cgan.runtime import CganError, ModelError, load


def test_generate_float_stays_within_the_output_range_where_the_graph_steps_past_it(tmp_path):
    """A float32 tanh gives -1.0000001 at saturation (the embedded default model does); the planted model's
    output is 1.05 x its tanh, so some values certainly lie past +-1 before the clip."""
    gen = load(planted_model("beyond", tmp_path / "beyond.onnx"), provider="cpu", engine="onnxruntime")
    raw = np.concatenate([b.images for b in gen.batches(0, 64, seed=0)])
    assert raw.min() < -1 or raw.max() > 1  # the planted fault is there
    images = gen.generate_float(0, 64, seed=0)
    assert images.dtype == np.float32 and images.min() >= -1.0 and images.max() <= 1.0
    np.testing.assert_array_equal(images, np.clip(raw, -1, 1))


def test_absurd_threads_are_refused_before_any_session_is_made():
    from _models import model_file

    with pytest.raises(CganError, match=r"threads must be between 1 and \d+ .*got 100000"):
        load(model_file("gen32"), provider="cpu", threads=100000)


def test_absurd_z_dim_metadata_is_refused_in_one_line(tmp_path):
    with pytest.raises(ModelError, match=r"metadata cgan\.z_dim=100000000000 must be between 1 and 65536"):
        load(planted_model("zdim_huge", tmp_path / "z.onnx"), provider="cpu", engine="onnxruntime")
