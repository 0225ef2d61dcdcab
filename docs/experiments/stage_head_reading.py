"""How a checkpoint's discriminator stage head reads the real images it was trained on.

For each checkpoint of a run with a stage head (``--aux-weight`` above 0), the head's mean posterior on
``--n`` training images per stage (drawn with ``--seed``; the run's own data, or the built-in synthetic
set), the discriminator in eval mode and the images as they are (no DiffAugment): one row per real
stage, one column per stage read. Its diagonal is what ``--aux-head matched`` asks the generator's
images to reach; the plain AC term asks for 1.

    python docs/experiments/stage_head_reading.py runs/levers/r3-ac500-cutout/checkpoints/ckpt_000000100.pt
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from cgan.train.data import load_image_set
from cgan.train.loop.batches import to_model_input
from cgan.train.models import GeneratorConfig, build_discriminator


def head_reading(checkpoint: str, n: int, seed: int) -> tuple[np.ndarray, float, list[str]]:
    """(mean posterior [real stage, read stage], accuracy over the drawn images, stage names)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    run = saved["train_config"]
    if not run.get("aux_weight"):
        raise SystemExit(f"{checkpoint}: its run has no stage head (--aux-weight 0)")
    config = GeneratorConfig(**saved["config"])
    head = run.get("aux_head", "ac")
    disc = build_discriminator(run["disc"], config, width=run["disc_width"], minibatch_std=run["minibatch_std"],
                               aux_classifier=True, aux_head=head)
    disc.load_state_dict(saved["discriminator"])
    disc.eval()
    images = load_image_set(run.get("data"), img_size=config.img_size, classes=run.get("classes"),
                            cache_dir=run.get("cache_dir"), log=lambda *_: None)
    labels = np.asarray(images.labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    k = config.num_classes
    picks = [rng.choice(np.flatnonzero(labels == s), min(n, int((labels == s).sum())), replace=False) for s in range(k)]
    order = rng.permutation(np.concatenate(picks))  # mixed batches, as in training
    posts, stages = [], []
    with torch.no_grad():
        for start in range(0, len(order), 64):
            idx = order[start:start + 64]
            x = to_model_input(np.asarray(images.images[np.sort(idx)]), torch.device("cpu"))
            y = torch.from_numpy(labels[np.sort(idx)])
            _, stage_logits = disc(x, y)
            posts.append(torch.softmax(stage_logits[:, :k].float(), dim=1))  # a twin head: its real-stage classes
            stages.append(y)
    post, real = torch.cat(posts), torch.cat(stages)
    reading = np.stack([post[real == s].mean(0).numpy() for s in range(k)])
    accuracy = float((post.argmax(1) == real).float().mean())
    return reading, accuracy, list(saved.get("class_names") or [str(s) for s in range(k)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--n", type=int, default=128, help="images per stage (default 128)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for checkpoint in args.checkpoints:
        reading, accuracy, names = head_reading(checkpoint, args.n, args.seed)
        print(f"{checkpoint}: accuracy {accuracy:.3f} on {args.n} training images per stage")
        print("| real stage | " + " | ".join(f"read as {s}" for s in range(len(names))) + " |")
        print("| --- |" + " ---: |" * len(names))
        for s, row in enumerate(reading):
            print(f"| {s} {names[s]} | " + " | ".join(f"{v:.2f}" for v in row) + " |")


if __name__ == "__main__":
    sys.exit(main())
