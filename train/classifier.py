"""The reference stage classifier that ``cgan-eval`` measures generators with.

A small CNN (four conv blocks, global average pooling, a 128-d feature layer, a linear head) trained
on real images with a stratified, seeded held-out split and class-balanced sampling. Its held-out
accuracy is the ceiling for the conditional accuracy of a generator; its feature layer is the space
the domain Fréchet distance and the feature diversity are measured in.

Images of any size are resized (bilinear, antialiased) to ``input_size`` (64 px by default), which
keeps training a few minutes on a CPU. A trained classifier is a plain ``torch.save`` dict of
tensors and built-in types (loadable with ``weights_only=True``) that records its config, the
dataset it was trained on (a key, so a cached file is reused only for the same data) and its
held-out metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cgan.runtime.errors import CganError
from cgan.runtime.fileio import atomic_path

FORMAT = "cgan-stage-classifier"
FORMAT_VERSION = 1

Log = Callable[[str], object]


class ClassifierError(CganError):
    """A classifier file that cannot be used, or a dataset it cannot be trained on."""


@dataclass(frozen=True)
class ClassifierConfig:
    """How the reference classifier is built and trained (all of it goes into the cache key)."""

    input_size: int = 64  # images are resized to this before the network
    width: int = 16  # channels of the first conv block; doubled per block (16, 32, 64, 128)
    feature_dim: int = 128  # the penultimate layer: the feature space of the Fréchet distance
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    holdout: float = 0.2  # fraction of every stage held out (stratified)
    seed: int = 0
    max_steps: int | None = None  # stop early (tests); None: the full epochs

    def validate(self) -> None:
        if not 8 <= self.input_size <= 512:
            raise ClassifierError(f"classifier input size must be 8..512 px, got {self.input_size}")
        if not 0.0 < self.holdout < 1.0:
            raise ClassifierError(f"held-out fraction must be between 0 and 1, got {self.holdout}")
        for name in ("width", "feature_dim", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ClassifierError(f"classifier {name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ClassifierError(f"classifier max_steps must be >= 1, got {self.max_steps}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassifierConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class StageCNN(nn.Module):
    """uint8-derived images ``[N, 1, S, S]`` in [-1, 1] -> stage logits; ``features()`` gives the penultimate layer."""

    def __init__(self, num_classes: int, config: ClassifierConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = 1
        for i in range(4):
            c_out = config.width << i
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.conv = nn.Sequential(*blocks)
        self.embed = nn.Sequential(nn.Linear(c_in, config.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(config.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.conv(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------- data helpers

def resize_u8(images: np.ndarray, size: int, *, chunk: int = 1024) -> np.ndarray:
    """uint8 ``[N, H, W]`` -> uint8 ``[N, size, size]`` (bilinear, antialiased; a copy even when no resize is needed)."""
    images = np.asarray(images) if not isinstance(images, np.memmap) else images
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ClassifierError(f"images must be uint8 [N, H, W], got shape {images.shape}")
    n = len(images)
    out = np.empty((n, size, size), dtype=np.uint8)
    for s in range(0, n, chunk):
        part = np.array(images[s : s + chunk], dtype=np.uint8)  # a writable copy (memmaps are read-only)
        if part.shape[1:] == (size, size):
            out[s : s + len(part)] = part
            continue
        x = torch.from_numpy(part).float().unsqueeze(1)
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[s : s + len(part)] = x.round_().clamp_(0, 255).to(torch.uint8).squeeze(1).numpy()
    return out


def to_input(u8: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, S, S]`` -> float32 ``[B, 1, S, S]`` in [-1, 1] (the trainer's mapping)."""
    return torch.from_numpy(np.array(u8, dtype=np.uint8)).to(device).unsqueeze(1).float().mul_(2.0 / 255.0).sub_(1.0)


def stratified_split(labels: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)``: ``round(holdout * count)`` of every class held out (at least one
    when a class has two or more images), chosen by a seeded permutation; both sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0xE7A1])
    train, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(holdout * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def dataset_key(image_set: Any) -> str:
    """A short key naming the images and labels of an ImageSet: its cache file name when it has one
    (which already hashes the source files and size), else a hash of the pixels and labels."""
    h = hashlib.sha256()
    cache_path = getattr(image_set, "cache_path", None)
    if cache_path is not None:
        h.update(f"cache:{Path(cache_path).name}".encode())
    else:
        images = np.ascontiguousarray(image_set.images)
        h.update(f"{images.shape}".encode())
        for s in range(0, len(images), 4096):
            h.update(images[s : s + 4096].tobytes())
    h.update(np.asarray(image_set.labels, dtype=np.int64).tobytes())
    h.update(json.dumps(list(image_set.class_names)).encode())
    return h.hexdigest()[:20]


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise CganError("--device cuda: CUDA is not available (no GPU or a CPU-only torch build); use --device cpu or auto")
        return torch.device("cuda")
    if requested == "cpu":
        return torch.device("cpu")
    raise CganError(f"--device {requested!r} is unknown; choose auto, cpu or cuda")


# ---------------------------------------------------------------- the classifier

class StageClassifier:
    """A trained :class:`StageCNN` with what it was trained on and how well it did on held-out images."""

    def __init__(self, model: StageCNN, config: ClassifierConfig, class_names: list[str], *,
                 dataset: dict[str, Any], metrics: dict[str, Any], device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.config = config
        self.class_names = list(class_names)
        self.dataset = dict(dataset)  # key, description, img_size, n
        self.metrics = dict(metrics)  # held-out accuracy, balanced accuracy, per-class, confusion, timing
        self.path: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (train, held-out) split this classifier was trained with, applied to ``labels``."""
        return stratified_split(labels, self.config.holdout, self.config.seed)

    @torch.no_grad()
    def embed(self, images: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``[N, H, W]`` images (any size) -> (logits float32 ``[N, K]``, features float32 ``[N, D]``)."""
        n = len(images)
        logits = np.empty((n, self.num_classes), dtype=np.float32)
        feats = np.empty((n, self.config.feature_dim), dtype=np.float32)
        for s in range(0, n, batch_size):
            part = resize_u8(images[s : s + batch_size], self.config.input_size)
            f = self.model.features(to_input(part, self.device))
            feats[s : s + len(part)] = f.float().cpu().numpy()
            logits[s : s + len(part)] = self.model.head(f).float().cpu().numpy()
        return logits, feats

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.embed(images)[0].argmax(axis=1)

    def state(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "dataset": dict(self.dataset),
            "metrics": _plain(self.metrics),
        }

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)
        self.path = path
        return path

    @classmethod
    def load(cls, path: Path, *, device: torch.device | None = None) -> "StageClassifier":
        path = Path(path)
        if not path.is_file():
            raise ClassifierError(f"classifier file {path} does not exist")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt or code-carrying files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ClassifierError(f"classifier file {path} is corrupt or not a cgan-eval classifier ({first})") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ClassifierError(f"{path} is not a cgan-eval classifier file (no '{FORMAT}' format tag)")
        if obj.get("format_version") != FORMAT_VERSION:
            raise ClassifierError(f"{path} has classifier format {obj.get('format_version')}; this version reads "
                                  f"{FORMAT_VERSION} (delete it to retrain)")
        config = ClassifierConfig.from_dict(obj["config"])
        names = list(obj["class_names"])
        model = StageCNN(len(names), config)
        try:
            model.load_state_dict(obj["state_dict"], strict=True)
        except RuntimeError as exc:
            raise ClassifierError(f"classifier file {path} does not match its own config ({str(exc).splitlines()[0]})") from None
        out = cls(model, config, names, dataset=obj.get("dataset", {}), metrics=obj.get("metrics", {}), device=device)
        out.path = path
        return out


def _plain(obj: Any, *, json_safe: bool = False) -> Any:
    """Metrics as built-in types only (what ``weights_only`` loading and JSON accept).

    ``json_safe``: also turn non-finite floats into ``None`` (strict JSON has no NaN).
    """
    if isinstance(obj, dict):
        return {str(k): _plain(v, json_safe=json_safe) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, json_safe=json_safe) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist(), json_safe=json_safe)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return None if json_safe and not math.isfinite(v) else v
    if isinstance(obj, Path):
        return str(obj)
    return obj


def confusion(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 ``[K, K]``: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def accuracy_summary(matrix: np.ndarray) -> dict[str, Any]:
    """Accuracy (pooled), balanced accuracy (mean per-class recall) and per-class recall from a confusion matrix."""
    rows = matrix.sum(axis=1)
    per_class = np.where(rows > 0, np.diag(matrix) / np.maximum(rows, 1), np.nan)
    return {
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "balanced_accuracy": float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan"),
        "per_class": [float(v) for v in per_class],
        "confusion": matrix.tolist(),
    }


def train_classifier(image_set: Any, config: ClassifierConfig | None = None, *, device: str | torch.device = "auto",
                     log: Log = print) -> StageClassifier:
    """Train the reference classifier on ``image_set`` (a cgan.train.data.ImageSet) and measure it on its held-out split."""
    config = config or ClassifierConfig()
    config.validate()
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    labels = np.asarray(image_set.labels, dtype=np.int64)
    names = list(image_set.class_names)
    k = len(names)
    counts = np.bincount(labels, minlength=k)
    if (counts < 2).any():
        few = [f"{n!r} ({int(c)})" for n, c in zip(names, counts) if c < 2]
        raise ClassifierError(f"every stage needs at least 2 images to hold one out; too few in {', '.join(few)}")
    train_idx, held_idx = stratified_split(labels, config.holdout, config.seed)
    t0 = time.perf_counter()
    small = resize_u8(image_set.images, config.input_size)
    x_train, y_train = small[train_idx], labels[train_idx]
    x_held, y_held = small[held_idx], labels[held_idx]

    torch.manual_seed(config.seed)
    model = StageCNN(k, config).to(dev)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / config.batch_size))
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.2)
    # class-balanced: each epoch draws as many images as the train split holds, weight 1/class count
    weights = 1.0 / counts[y_train]
    weights = weights / weights.sum()
    log(f"training the reference classifier on {len(train_idx):,} images ({config.input_size} px, "
        f"{config.epochs} epochs, balanced sampling; {len(held_idx):,} held out) on {dev.type} ...")
    from .synth import progress_bar

    step = 0
    with progress_bar("classifier") as bar:
        task = bar.add_task("", total=total)
        for epoch in range(config.epochs):
            rng = np.random.default_rng([config.seed, epoch, 0xC1A5])
            order = rng.choice(len(y_train), size=len(y_train), replace=True, p=weights)
            model.train()
            loss_sum, seen = 0.0, 0
            for s in range(0, len(order), config.batch_size):
                if step >= total:
                    break
                idx = np.sort(order[s : s + config.batch_size])
                x = to_input(x_train[idx], dev)
                y = torch.from_numpy(y_train[idx]).to(dev)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_sum += loss.item() * len(idx)
                seen += len(idx)
                bar.advance(task)
            clf = StageClassifier(model, config, names, dataset={}, metrics={}, device=dev)
            held_pred = clf.predict(x_held)
            summary = accuracy_summary(confusion(y_held, held_pred, k))
            log(f"classifier epoch {epoch + 1}/{config.epochs}: loss {loss_sum / max(seen, 1):.4f}, "
                f"held-out accuracy {summary['accuracy']:.4f} (balanced {summary['balanced_accuracy']:.4f})")
            if step >= total:
                break
    seconds = time.perf_counter() - t0
    metrics = {
        "held_out": summary,
        "n_train": int(len(train_idx)),
        "n_held_out": int(len(held_idx)),
        "steps": int(step),
        "train_seconds": round(seconds, 2),
        "device": dev.type,
    }
    dataset = {
        "key": dataset_key(image_set),
        "description": str(getattr(image_set, "description", "")),
        "img_size": int(image_set.images.shape[-1]),
        "n": int(len(labels)),
    }
    log(f"reference classifier: held-out accuracy {summary['accuracy']:.4f}, balanced {summary['balanced_accuracy']:.4f} "
        f"(per stage: {', '.join(f'{v:.3f}' for v in summary['per_class'])}) in {seconds:.0f} s")
    return StageClassifier(model, config, names, dataset=dataset, metrics=metrics, device=dev)


def cache_file(cache_dir: Path, image_set: Any, config: ClassifierConfig) -> Path:
    """Where the classifier for (``image_set``, ``config``) is cached: ``<cache>/classifiers/<key>.pt``."""
    ident = json.dumps({"data": dataset_key(image_set), "config": config.to_dict(), "v": FORMAT_VERSION}, sort_keys=True)
    return Path(cache_dir) / "classifiers" / f"stage-cnn-{hashlib.sha256(ident.encode()).hexdigest()[:20]}.pt"


def get_classifier(image_set: Any, config: ClassifierConfig | None = None, *, path: Path | None = None,
                   cache_dir: Path | None = None, device: str | torch.device = "auto", retrain: bool = False,
                   log: Log = print) -> StageClassifier:
    """The reference classifier for ``image_set``: ``path`` if given and present (else trained and saved
    there), otherwise the cached one for (dataset, config), trained and cached on first use."""
    config = config or ClassifierConfig()
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if path is None:
        if cache_dir is None:
            from .data import default_cache_dir

            cache_dir = default_cache_dir()
        path = cache_file(Path(cache_dir).expanduser(), image_set, config)
    path = Path(path).expanduser()
    if path.exists() and not retrain:
        clf = StageClassifier.load(path, device=dev)
        if clf.class_names != list(image_set.class_names):
            raise ClassifierError(f"classifier {path} was trained on stages {clf.class_names}, "
                                  f"the data has {list(image_set.class_names)}")
        log(f"using the reference classifier {path} (held-out accuracy "
            f"{clf.metrics.get('held_out', {}).get('accuracy', float('nan')):.4f})")
        return clf
    clf = train_classifier(image_set, config, device=dev, log=log)
    clf.save(path)
    log(f"saved the reference classifier to {path}")
    return clf
