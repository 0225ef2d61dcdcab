"""Benchmarks of dementia-cgan (pytest-benchmark): parity and speed of ONNX Runtime against torch.

Not an installed package: run from the repository root, ``pytest --benchmark-only`` then
``python -m bench.report``. See bench/README.md.
"""
