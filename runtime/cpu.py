"""What the CPU can do, read from /proc/cpuinfo: vector ISA and int8 dot-product instructions.

An int8 model's rounding depends on the kernels the CPU runs: ONNX Runtime's u8 x s8 products on AVX2
without VNNI add pairs of products in 16-bit (``vpmaddubsw``) and can saturate, which VNNI and AMX
cannot; so an int8 model's measured worst case holds on CPUs of the class it was validated on. The class
is a short name (``avx2``, ``avx512``, ``avx512-vnni``, ``avx-vnni``, ``amx``, ``neon``, ...) recorded in
the model by ``cgan-export --int8`` and compared by the runtime.
"""

from __future__ import annotations

import functools

# Metadata an int8 model carries (written by cgan-export --int8): the CPU class and worst case it was validated with.
INT8_ISA_KEY = "cgan.int8_isa"
INT8_MAX_KEY = "cgan.int8_max_grey"
INT8_P999_KEY = "cgan.int8_p999_grey"

# The flags worth naming beside a speed or int8 figure (Linux /proc/cpuinfo names).
ISA_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty when /proc/cpuinfo is not there, e.g. on macOS or Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name, or the machine type when it is not known."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return " ".join(value.split())
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def isa_class(flags: frozenset[str] | None = None) -> str:
    """The CPU class that decides int8 rounding: its best int8 dot-product path (see the module docstring)."""
    flags = cpu_flags() if flags is None else flags
    if "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if "asimddp" in flags:
        return "neon-dotprod"
    if "asimd" in flags:
        return "neon"
    if flags:
        return "sse"
    import platform

    return platform.machine().lower() or "unknown"


def isa_summary(flags: frozenset[str] | None = None) -> str:
    """The named flags that are present, e.g. ``avx fma avx2`` (for reports beside a speed figure)."""
    flags = cpu_flags() if flags is None else flags
    present = [f for f in ISA_FLAGS if f in flags]
    return " ".join(present) or "none of " + "/".join(ISA_FLAGS[:4])


def int8_isa_notice(provenance: dict, precision: str, *, current: str | None = None) -> str | None:
    """One line when an int8 model runs on a CPU class other than the one its worst case was measured on, else None."""
    validated = provenance.get(INT8_ISA_KEY)
    if precision != "int8" or not validated:
        return None
    current = current or isa_class()
    if validated == current:
        return None
    return (f"note: this int8 model's worst case (largest pixel difference {provenance.get(INT8_MAX_KEY, '?')}, 99.9th percentile "
            f"{provenance.get(INT8_P999_KEY, '?')} grey levels from its fp32 model) was measured on a CPU of class {validated}; this one is "
            f"{current}, whose int8 kernels round differently: re-run cgan-export --int8 here to measure it, or use the fp32 model")
