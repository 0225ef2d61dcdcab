"""Parity: ONNX Runtime output against torch eager on the same z and stages, every stage, batch 1/16/64.

The reference is the briefly trained Generator (non-trivial BatchNorm statistics) in eval mode on
the CPU in fp32; the candidate is its export run by onnxruntime's CPU provider with default options.
Tolerances and their reasoning: bench/README.md ("Parity tolerances"). Violations fail the benchmark.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench._helpers import psnr, record_throughput, run_benchmark

BATCHES = (1, 16, 64)

# Per precision: max abs error (outputs in [-1, 1]), minimum PSNR over the range 2, minimum PSNR over
# the reference's own range (max - min), max difference of the uint8 pixels. Reasoning: bench/README.md.
TOLERANCES = {
    "fp32": {"max_abs_err": 1e-5, "psnr_range2_db": 100.0, "psnr_ref_range_db": 95.0, "max_uint8_diff": 1},
    "fp16": {"max_abs_err": 5e-3, "psnr_range2_db": 60.0, "psnr_ref_range_db": 55.0, "max_uint8_diff": 1},
}


def _torch_reference(gen, z: np.ndarray, stage: int) -> np.ndarray:
    import torch

    labels = torch.full((z.shape[0],), stage, dtype=torch.long)
    with torch.no_grad():  # the original's inference path
        return gen.eval()(torch.from_numpy(z)[:, :, None, None], labels).numpy()


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_parity(benchmark, request, torch_generator, precision, batch):
    from bench._ort import default_session
    from cgan.runtime.contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE, noise, to_uint8

    report = request.getfixturevalue(f"onnx_{precision}")
    benchmark.group = f"parity {precision}"
    cfg = torch_generator.config
    z = noise(0, 0, batch, cfg.z_dim)
    stages = range(cfg.num_classes)
    refs = {s: _torch_reference(torch_generator, z, s) for s in stages}
    sess = default_session(report.path)
    feeds = {s: {INPUT_Z: z, INPUT_STAGE: np.full(batch, s, np.int64)} for s in stages}
    outs: dict[int, np.ndarray] = {}

    def run_all_stages():
        for s in stages:
            outs[s] = sess.run([OUTPUT_IMAGE], feeds[s])[0]

    run_benchmark(benchmark, run_all_stages, budget_s=0.5, min_rounds=1)

    tol = TOLERANCES[precision]
    per_stage = {}
    for s in stages:
        ref, out = refs[s], outs[s]
        assert out.shape == ref.shape and out.dtype == np.float32, (out.shape, out.dtype)
        ref_range = float(ref.max() - ref.min())
        per_stage[s] = {
            "max_abs_err": float(np.max(np.abs(out.astype(np.float64) - ref))),
            "psnr_range2_db": psnr(ref, out, 2.0),
            "psnr_ref_range_db": psnr(ref, out, ref_range),
            "ref_range": ref_range,
            "max_uint8_diff": int(np.max(np.abs(to_uint8(out).astype(int) - to_uint8(ref).astype(int)))),
        }
    worst = {
        "max_abs_err": max(m["max_abs_err"] for m in per_stage.values()),
        "psnr_range2_db": min(m["psnr_range2_db"] for m in per_stage.values()),
        "psnr_ref_range_db": min(m["psnr_ref_range_db"] for m in per_stage.values()),
        "min_ref_range": min(m["ref_range"] for m in per_stage.values()),
        "max_uint8_diff": max(m["max_uint8_diff"] for m in per_stage.values()),
    }
    record_throughput(
        benchmark, images=batch * len(stages), kind="parity", device="cpu", engine="onnxruntime",
        variant=f"ORT {precision}", precision=precision, batch=batch,
        export_max_abs_err=float(report.max_abs_err),
        tolerances=tol, **{k: (round(v, 3) if "psnr" in k or "range" in k else v) for k, v in worst.items()},
    )
    # Outputs of a real model span most of [-1, 1]; a tiny range would make these numbers meaningless.
    assert worst["min_ref_range"] > 0.5, f"reference outputs span only {worst['min_ref_range']:.3f}"
    failures = [
        f"stage {s}: {k}={m[k]:.3g} (tolerance {tol[k]})"
        for s, m in per_stage.items()
        for k in tol
        if (m[k] > tol[k] if k in ("max_abs_err", "max_uint8_diff") else m[k] < tol[k])
    ]
    assert not failures, f"{precision} batch {batch}: " + "; ".join(failures)
