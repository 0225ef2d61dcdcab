"""``cgan-eval``: the evaluator, one file per figure.

- :mod:`.splits` — held-out splits by subject (OASIS names or ``--group-regex``), image-level fallback;
- :mod:`.networks`, :mod:`.fit`, :mod:`.judges` — the two judges (reference networks), their fast
  training with early stopping and checkpoints, their competence gate and cache;
- :mod:`.metrics` — Fréchet distance, KID, precision/recall, diversity, accuracy;
- :mod:`.calibration` — real images slightly degraded, scored like a generator;
- :mod:`.figures` — every judge-based figure of one judge;
- :mod:`.verdict` — the bar over judges (the worse one counts) and their disagreement;
- :mod:`.augment` — the augmentation experiment (real / real + generated / generated only);
- :mod:`.balance_study`, :mod:`.balance_stats`, :mod:`.balance_report` — the balance study (generated
  top-ups against a class-balanced sampler and a class-weighted loss), its intervals and verdict, its report;
- :mod:`.sources` — the generator under evaluation (ONNX or checkpoint);
- :mod:`.evaluate`, :mod:`.report`, :mod:`.cli` — one run, its report, the command.

Nothing here imports torch at package import, so ``cgan-eval --help`` works without it.
"""
