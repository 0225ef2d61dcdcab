"""What `cgan-run --n 1` imports on its way to the first PNG: only what that path needs (issue 17).

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
heavy = ("rich", "huggingface_hub", "torch", "pydantic", "onnx", "PIL")
print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def _loaded(args: list[str], cwd) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_one_image_run_imports_no_progress_bar_hub_client_or_image_library(tmp_path):
    got = _loaded(["--model", str(model_file("gen32")), "--n", "1", "--stage", "0", "--out", str(tmp_path / "out")], tmp_path)
    assert got == {"code": 0, "loaded": []}
    assert (tmp_path / "out" / "stage0_seed0_00000000.png").is_file()


def test_a_run_of_several_batches_still_shows_its_progress_bar(tmp_path):
    got = _loaded(["--model", str(model_file("gen32")), "--n", "3", "--batch-size", "1", "--stage", "0", "--out", str(tmp_path / "out")], tmp_path)
    assert got["code"] == 0 and "rich" in got["loaded"]
