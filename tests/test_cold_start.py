"""What `cgan-run --n 1` imports on its way to the first PNG: only what that path needs.

Timing belongs to bench/ (test_bench_edge.py measures the cold start against the torch script); this
checks the cause instead: heavy optional layers stay off the start path of a small run.
"""

from __future__ import annotations

import json
import subprocess
import sys

from _models import model_file

_CHILD = """
import json, sys
sys.argv = ["cgan-run"] + json.loads(sys.argv[1])
from cgan.runtime.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = ("rich", "huggingface_hub", "torch", "pydantic", "onnx", "PIL", "typer", "click", "socket", "openvino")
print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def _loaded(args: list[str], cwd) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


def test_one_image_run_imports_no_progress_bar_hub_client_image_library_or_cli_framework(tmp_path):
    got = _loaded(["--model", str(model_file("gen32")), "--n", "1", "--stage", "0", "--out", str(tmp_path / "out")], tmp_path)
    assert {k: got[k] for k in ("code", "loaded")} == {"code": 0, "loaded": []}
    assert (tmp_path / "out" / "stage0_seed0_00000000.png").is_file()


def test_a_large_auto_run_takes_openvino_when_installed_and_a_small_one_never_imports_it(tmp_path):
    """The default engine choice (auto) must not cost a small run OpenVINO's import; a big run is where it pays."""
    from cgan.runtime.engines import OPENVINO_MIN_IMAGES, openvino_installed

    small = _loaded(["--model", str(model_file("gen32")), "--n", "2", "--stage", "0", "--format", "none", "--out", str(tmp_path / "a")], tmp_path)
    assert small["code"] == 0 and "openvino" not in small["loaded"]
    big = _loaded(["--model", str(model_file("gen32")), "--n", str(OPENVINO_MIN_IMAGES), "--stage", "0", "--format", "none", "--quiet",
                   "--out", str(tmp_path / "b")], tmp_path)  # fmt: skip
    assert big["code"] == 0 and ("openvino" in big["loaded"]) == openvino_installed()


def test_a_run_of_several_batches_still_shows_its_progress(tmp_path):
    """Only a one-batch run goes without progress; in a pipe it is plain lines (a terminal gets rich's bar)."""
    got = _loaded(["--model", str(model_file("gen32")), "--n", "3", "--batch-size", "1", "--stage", "0", "--out", str(tmp_path / "out")], tmp_path)
    assert got["code"] == 0 and "generating: image 3/3 (100%)" in got["stderr"], got["stderr"]


def test_declared_precision_is_read_without_a_session(tmp_path):
    from cgan.runtime.session import declared_precision

    assert declared_precision(model_file("gen32")) == "fp32"
    assert declared_precision(model_file("no_metadata")) is None
    (tmp_path / "text.onnx").write_text("not a model\n")
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert declared_precision(tmp_path / "text.onnx") is None
    assert declared_precision(tmp_path / "empty.onnx") is None
    assert declared_precision(tmp_path / "missing.onnx") is None


def test_single_image_runs_skip_weight_prepacking_for_fp32_only_with_the_same_images(tmp_path):
    import numpy as np

    from cgan.export.int8 import stage_feeds
    from cgan.export.int8_export import export_int8
    from cgan.runtime import load
    from cgan.runtime.contract import read_metadata

    src = model_file("gen32")
    packed, auto = load(src, prepack=True, engine="onnxruntime"), load(src, prepack="auto", engine="onnxruntime")
    assert packed.settings.prepack is True and auto.settings.prepack is False
    options = auto._session.session.get_session_options()
    assert options.get_session_config_entry("session.disable_prepacking") == "1"
    a = packed.generate_float(stage=1, n=3, seed=2)
    b = auto.generate_float(stage=1, n=3, seed=2)
    assert np.abs(a - b).max() < 1e-5
    int8 = export_int8(src, tmp_path / "q.onnx", model_card=False, calibration=stage_feeds(read_metadata(src), 8, seed=3)).path
    assert load(int8, prepack="auto", engine="onnxruntime").settings.prepack is True  # int8 kernels are 4x slower unpacked: always packed


def test_latency_mode_keeps_worker_threads_spinning_between_calls_and_gives_the_same_images():
    import numpy as np

    from cgan.runtime import load

    src = model_file("gen32")
    plain, fast = load(src, engine="onnxruntime"), load(src, latency=True)  # latency mode: ONNX Runtime's spinning, whatever is installed
    assert plain.settings.spin is False and fast.settings.spin is True
    def entry(g, key):
        return g._session.session.get_session_options().get_session_config_entry(key)

    # both spin inside a run; only the latency session keeps spinning once a run has returned
    assert entry(plain, "session.intra_op.allow_spinning") == "1" and entry(fast, "session.intra_op.allow_spinning") == "1"
    assert entry(plain, "session.force_spinning_stop") == "1" and entry(fast, "session.force_spinning_stop") == "0"
    for stage in range(4):
        assert np.array_equal(plain.generate(stage=stage, n=1, seed=5), fast.generate(stage=stage, n=1, seed=5))
