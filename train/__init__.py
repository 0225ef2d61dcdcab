"""dementia-cgan trainer (needs the `train` extra: torch). Importing this package does not import torch."""
