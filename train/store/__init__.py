"""A model's life on disk: what ``cgan-train`` writes (:mod:`.write`: the generator file and full
checkpoints) and what reads it back (:mod:`.read`: a generator from any checkpoint we accept;
:mod:`.read_exported`: an exported ``.onnx`` rebuilt into a generator for a warm start; :mod:`.read_init`:
the source ``--init-from`` names)."""
