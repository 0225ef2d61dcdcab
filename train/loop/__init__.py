"""The training loop (:mod:`.run`: :class:`~.run.TrainingRun` and :func:`~.run.train`) and its parts:
the sampler and batches, the losses and augmentation, device and precision, distributed helpers, the
checkpoint state it writes and resumes from, and the reports it writes."""
