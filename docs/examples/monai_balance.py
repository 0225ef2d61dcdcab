"""Train a MONAI DenseNet121 on real images, and on real + generated ones, and compare them on held-out subjects.

    pip install "dementia-cgan[monai]"
    cgan-data synth --out synth/ --n 2000 --img-size 64      # or your own OASIS-layout folder
    python docs/examples/monai_balance.py synth/ --epochs 5

The real images are split by subject (OASIS names: OAS1_<subject>_...): a quarter of every stage's
subjects is held out for testing. The generated images top every stage of the training side up to
its largest stage (the plan of ``cgan-run --balance``) and are drawn inside the DataLoader by
:class:`cgan.runtime.GeneratedDataset`, never written to disk. Both arms train the same network with
the same seed and number of steps per epoch; the script prints balanced accuracy (the mean of the
per-stage recalls) and the recall of the rarest stage for each.

Synthetic images, for research and education only: never for diagnosis.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

import numpy as np
import torch
from monai.networks.nets import DenseNet121
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from cgan.runtime import GeneratedDataset
from cgan.runtime.balance import plan_counts
from cgan.runtime.layout import find_layout, list_images

SUBJECT = re.compile(r"(OAS\d_\d+)")


def read_real(folder: str, size: int):
    """Every image of a dataset folder, grey, ``size`` px: (uint8 [N, size, size], stages [N], subjects [N])."""
    layout = find_layout(folder)
    images, stages, subjects = [], [], []
    for stage, files in enumerate(list_images(layout)):
        for f in files:
            with Image.open(f) as im:
                images.append(np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR)))
            stages.append(stage)
            m = SUBJECT.search(f.name)
            subjects.append(m.group(1) if m else str(f))  # no subject in the name: the image is its own subject
    return np.stack(images), np.array(stages), np.array(subjects)


def split_by_subject(stages: np.ndarray, subjects: np.ndarray, held: float, seed: int):
    """Indices (train, test): ``held`` of every stage's subjects (at least one) go to the test side."""
    rng = np.random.default_rng(seed)
    by_stage = defaultdict(set)
    for s, subj in zip(stages, subjects):
        by_stage[s].add(subj)
    test_subjects = set()
    for s, subjs in sorted(by_stage.items()):
        subjs = sorted(subjs)
        n = max(1, round(held * len(subjs))) if len(subjs) > 1 else 0
        test_subjects.update(rng.permutation(subjs)[:n].tolist())
    test = np.array([subj in test_subjects for subj in subjects])
    return np.flatnonzero(~test), np.flatnonzero(test)


class Prepare:
    """uint8 [H, W] -> float32 tensor [1, size, size] in [0, 1]: the same for real and generated images."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if image.shape[0] != self.size:
            image = np.asarray(Image.fromarray(image).resize((self.size, self.size), Image.Resampling.BILINEAR))
        return torch.from_numpy(image.astype(np.float32) / 255.0)[None]


class RealImages(Dataset):
    def __init__(self, images: np.ndarray, stages: np.ndarray, prepare: Prepare) -> None:
        self.images, self.stages, self.prepare = images, stages, prepare

    def __len__(self) -> int:
        return len(self.stages)

    def __getitem__(self, i: int):
        return self.prepare(self.images[i]), int(self.stages[i])


def train_and_test(train_set: Dataset, test_x: torch.Tensor, test_y: np.ndarray, *, epochs: int, batch: int,
                   workers: int, seed: int, classes: int) -> np.ndarray:
    """Fit a fresh DenseNet121 on ``train_set``; the predicted stages of ``test_x``."""
    torch.manual_seed(seed)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    loader = DataLoader(train_set, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0)
    for epoch in range(epochs):
        net.train()
        total, count = 0.0, 0
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(net(x), torch.as_tensor(y))
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(y), count + len(y)
        print(f"    epoch {epoch + 1}/{epochs}: loss {total / count:.3f} over {count} images", flush=True)
    net.eval()
    with torch.no_grad():
        return torch.cat([net(test_x[i : i + 256]).argmax(1) for i in range(0, len(test_x), 256)]).numpy()


def recalls(pred: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    return np.array([(pred[truth == s] == s).mean() if (truth == s).any() else np.nan for s in range(classes)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="dataset folder: the OASIS class folders or stage0..stage3 (e.g. from cgan-data synth)")
    p.add_argument("--model", default=None, help="generator .onnx or hf:OWNER/REPO (default: as cgan-run finds it)")
    p.add_argument("--size", type=int, default=64, help="image size the classifier sees (default 64)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (each opens its own model session)")
    p.add_argument("--max-per-stage", type=int, default=None, help="at most this many generated images per stage (cost)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    images, stages, subjects = read_real(args.data, args.size)
    classes = int(stages.max()) + 1
    train, test = split_by_subject(stages, subjects, held=0.25, seed=args.seed)
    counts = np.bincount(stages[train], minlength=classes)
    plan = plan_counts(counts)  # every stage of the training side up to its largest: cgan-run --balance's plan
    if args.max_per_stage is not None:
        plan = tuple(min(n, args.max_per_stage) for n in plan)
    rare = int(np.argmin(counts))
    print(f"real: {len(stages)} images of {len(set(subjects))} subjects; training side {counts.tolist()}, "
          f"test side {np.bincount(stages[test], minlength=classes).tolist()} (split by subject)")
    print(f"generated per stage: {list(plan)}; rarest stage: {rare}")

    prepare = Prepare(args.size)
    real_train = RealImages(images[train], stages[train], prepare)
    # batch_size=1 (the default): the loader shuffles, so a block of images would serve one item and be dropped
    generated = GeneratedDataset(plan, model=args.model, seed=args.seed, transform=prepare, threads=1)
    test_x = torch.stack([prepare(im) for im in images[test]])
    test_y = stages[test]

    results = {}
    for arm, train_set in (("real", real_train), ("real + generated", ConcatDataset([real_train, generated]))):
        print(f"  {arm}: {len(train_set)} training images", flush=True)
        pred = train_and_test(train_set, test_x, test_y, epochs=args.epochs, batch=args.batch, workers=args.workers,
                              seed=args.seed, classes=classes)
        r = recalls(pred, test_y, classes)
        results[arm] = (float(np.nanmean(r)), float(r[rare]))
    print(f"\n{'arm':<18} {'balanced accuracy':>18} {f'recall, stage {rare}':>16}")
    for arm, (bacc, rec) in results.items():
        print(f"{arm:<18} {bacc:>18.3f} {rec:>16.3f}")


if __name__ == "__main__":
    main()
