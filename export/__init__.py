"""dementia-cgan ONNX exporter (needs the `export` extra: torch and onnx). Importing this package does not import torch."""
