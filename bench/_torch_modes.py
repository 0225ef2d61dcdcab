"""Ways of running the torch Generator for inference, each a labelled variant built outside the timed call.

``eager fp32`` is the original project's inference path: ``model.eval()``, ``torch.no_grad()``,
``G(z[:, :, None, None], labels)``. Every other variant changes one thing from it.
Compiled variants run in a worker process each (bench/_worker.py): several compiled variants in
one process would hit dynamo's recompile limit and fall back to eager without saying so.
"""

from __future__ import annotations

import contextlib
from typing import Callable

# in-process variants (cheap to build) and compiled ones (one worker process each)
EAGER = "eager fp32"
CPU_EAGER_MODES = (EAGER, "inference_mode fp32", "channels_last fp32", "bf16 autocast")
CPU_COMPILED_MODES = ("compile fp32 (freezing)", "compile bf16 autocast (freezing)")
CUDA_MODES = ("cuda eager fp32", "cuda eager fp16", "cuda channels_last fp16")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 matmuls are emulated and slower than fp32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inputs(batch: int, z_dim: int, num_classes: int, seed: int = 0, device: str = "cpu"):
    import torch

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, z_dim, generator=g)
    labels = torch.arange(batch) % num_classes
    return z.to(device), labels.to(device)


def make_runner(gen, mode: str, batch: int, *, seed: int = 0) -> Callable[[], object]:
    """A no-argument callable generating one batch with ``mode``; the model/inputs are prepared here.

    ``gen`` is an eval-mode Generator on the CPU; it is copied when the variant changes it.
    """
    import copy

    import torch

    cfg = gen.config
    z, labels = inputs(batch, cfg.z_dim, cfg.num_classes, seed)
    if mode == EAGER:
        model = gen.eval()

        def run():
            with torch.no_grad():
                return model(z[:, :, None, None], labels)

        return run
    if mode == "inference_mode fp32":
        model = gen.eval()

        def run():
            with torch.inference_mode():
                return model(z[:, :, None, None], labels)

        return run
    if mode == "channels_last fp32":
        model = copy.deepcopy(gen).eval().to(memory_format=torch.channels_last)
        z4 = z[:, :, None, None].contiguous(memory_format=torch.channels_last)

        def run():
            with torch.no_grad():
                return model(z4, labels)

        return run
    if mode == "bf16 autocast":
        model = gen.eval()

        def run():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                return model(z[:, :, None, None], labels)

        return run
    if mode.startswith("compile"):
        return _compiled_runner(gen, mode, z, labels)
    if mode.startswith("cuda"):
        return _cuda_runner(gen, mode, z, labels)
    raise ValueError(f"unknown torch mode {mode!r}")


def _compiled_runner(gen, mode: str, z, labels):
    """torch.compile with inductor freezing (folds BatchNorm into the convolutions); call once to compile."""
    import torch
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    # Fail loudly instead of silently running eager if the recompile limit is hit.
    with contextlib.suppress(AttributeError):
        torch._dynamo.config.fail_on_recompile_limit_hit = True
    compiled = torch.compile(gen.eval(), fullgraph=True, dynamic=False)
    z4 = z[:, :, None, None]
    autocast = "bf16" in mode

    def run():
        with torch.no_grad():
            if autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return compiled(z4, labels)
            return compiled(z4, labels)

    return run


def _cuda_runner(gen, mode: str, z, labels):
    import copy

    import torch

    model = copy.deepcopy(gen).eval().cuda()
    z4, labels = z[:, :, None, None].cuda(), labels.cuda()
    if "fp16" in mode:
        model = model.half()
        z4 = z4.half()
    if "channels_last" in mode:
        model = model.to(memory_format=torch.channels_last)
        z4 = z4.contiguous(memory_format=torch.channels_last)

    def run():
        with torch.no_grad():
            out = model(z4, labels)
        torch.cuda.synchronize()
        return out

    return run
