"""Judges: a reference stage network, its feature extractor and its competence gate.

A judge is trained on the fit part of the subject-level split (:mod:`.splits`), stops early on the
validation part, and is measured on the held-out subjects: its balanced accuracy there is the ceiling
for a generator's conditional accuracy, and it must reach the competence gate before its figures count
toward a verdict. Its 128-d penultimate layer is the feature space of the Fréchet distance, KID and
precision/recall. Two judges of different design (:mod:`.networks`) read every generator, so a verdict
does not hang on one network.

A trained judge is cached as a plain ``torch.save`` dict of tensors and built-in types (loadable with
``weights_only=True``) keyed on the data's fingerprint, the split and the config; an interrupted
training resumes from its last epoch.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cgan.runtime.errors import CganError
from cgan.runtime.fileio import atomic_path

from .fit import fit, resize_u8, to_input
from .metrics import accuracy_summary, confusion, plain
from .networks import ARCHS, build
from .splits import Split

FORMAT = "cgan-eval-judge"
FORMAT_VERSION = 2
DEFAULT_GATE = 0.8

Log = Callable[[str], object]


class JudgeError(CganError):
    """A judge file that cannot be used, or data a judge cannot be trained on."""


@dataclass(frozen=True)
class JudgeConfig:
    """How a judge is built and trained (all of it goes into the cache key)."""

    arch: str = "small"
    input_size: int | None = 64  # None: the data's own resolution (no resize)
    width: int = 16
    feature_dim: int = 128
    max_epochs: int = 8
    patience: int = 2  # epochs without a validation gain before stopping
    min_epochs: int = 4  # never stop before this many epochs
    epoch_images: int = 2560  # class-balanced draws (with replacement) per epoch, whatever the pool's size
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    max_steps: int | None = None  # stop early (tests); None: max_epochs
    gate: float = DEFAULT_GATE  # competence gate: held-out balanced accuracy needed to give a verdict
    augment: str = ""  # training jitter, comma-separated: shift, intensity (see fit.augment_batch); "": none
    average_last: int = 0  # keep the average of the last N epochs' weights (0: the best validation epoch)

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise JudgeError(f"judge architecture {self.arch!r} is unknown; choose {', '.join(ARCHS)}")
        if self.input_size is not None and not 8 <= self.input_size <= 512:
            raise JudgeError(f"judge input size must be 8..512 px, got {self.input_size}")
        for name in ("width", "feature_dim", "max_epochs", "patience", "min_epochs", "epoch_images", "batch_size"):
            if getattr(self, name) < 1:
                raise JudgeError(f"judge {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.average_last <= self.max_epochs:
            raise JudgeError(f"judge average_last must be within 0..max_epochs ({self.max_epochs}), got {self.average_last}")
        if self.max_steps is not None and self.max_steps < 1:
            raise JudgeError(f"judge max_steps must be >= 1, got {self.max_steps}")
        from .fit import JUDGE_AUGMENTS

        unknown = [a for a in self.augment.split(",") if a and a not in JUDGE_AUGMENTS]
        if unknown:
            raise JudgeError(f"judge augmentation {unknown[0]!r} is unknown; choose from {', '.join(JUDGE_AUGMENTS)}")
        if not 0.0 <= self.gate <= 1.0:
            raise JudgeError(f"the competence gate must be within 0..1, got {self.gate}")

    def size_for(self, img_size: int) -> int:
        return int(self.input_size or img_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JudgeConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


DEFAULT_EPOCHS = 30
DEFAULT_AUGMENT = "shift,intensity"


def default_judges(*, seed: int = 0, gate: float = DEFAULT_GATE, max_epochs: int = DEFAULT_EPOCHS) -> list[JudgeConfig]:
    """The two judges of a default evaluation: small at 64 px, deep at full resolution.

    Each trains its whole one-cycle schedule (no early stop: ``min_epochs = max_epochs``) with shift and
    intensity jitter and keeps the average of its last third's weights (:func:`averaged_tail`), its
    BatchNorm statistics measured afresh. On the judge set (:mod:`.judge_set`: 256 subjects per stage, 64
    held out) they read 0.819 (small) and 0.830 (deep) held-out balanced accuracy at seed 0, 0.822 and
    0.809 at seed 1; keeping the best validation epoch instead read 0.825/0.814 and 0.819/0.795. For the
    deep judge at seed 1, half the fit subjects read 0.796, twice the epochs 0.821, twice the width 0.822:
    these figures sit near what such networks read on this data.
    """
    common = dict(seed=seed, gate=gate, max_epochs=max_epochs, min_epochs=max_epochs, augment=DEFAULT_AUGMENT,
                  average_last=averaged_tail(max_epochs))
    return [JudgeConfig(arch="small", input_size=64, **common),
            JudgeConfig(arch="deep", input_size=None, **common)]


def averaged_tail(epochs: int) -> int:
    """Epochs whose weights a whole-schedule fit averages: the last third (the one-cycle schedule's
    low-learning-rate tail), at least one."""
    return max(1, int(epochs) // 3)


def judge_name(config: JudgeConfig, img_size: int) -> str:
    return f"{config.arch} ({config.size_for(img_size)} px)"


class Judge:
    """A trained judge network with what it was trained on and how well it read held-out real images."""

    def __init__(self, model: torch.nn.Module, config: JudgeConfig, class_names: list[str], *, img_size: int,
                 dataset: dict[str, Any], metrics: dict[str, Any], device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()
        self.config = config
        self.class_names = list(class_names)
        self.img_size = int(img_size)
        self.dataset = dict(dataset)
        self.metrics = dict(metrics)
        self.path: Path | None = None

    @property
    def name(self) -> str:
        return judge_name(self.config, self.img_size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def held_out(self) -> dict[str, Any]:
        return self.metrics["held_out"]

    @property
    def competent(self) -> bool:
        return bool(self.held_out["balanced_accuracy"] >= self.config.gate)

    @torch.no_grad()
    def embed(self, images: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``[N, H, W]`` -> (logits float32 ``[N, K]``, features float32 ``[N, D]``)."""
        n = len(images)
        logits = np.empty((n, self.num_classes), dtype=np.float32)
        feats = np.empty((n, self.config.feature_dim), dtype=np.float32)
        size = self.config.size_for(self.img_size)
        for s in range(0, n, batch_size):
            part = resize_u8(np.asarray(images[s : s + batch_size]), size)
            f = self.model.features(to_input(part, self.device))
            feats[s : s + len(part)] = f.float().cpu().numpy()
            logits[s : s + len(part)] = self.model.head(f).float().cpu().numpy()
        return logits, feats

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.embed(images)[0].argmax(axis=1)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"format": FORMAT, "format_version": FORMAT_VERSION,
                 "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                 "config": self.config.to_dict(), "class_names": self.class_names, "img_size": self.img_size,
                 "dataset": plain(self.dataset), "metrics": plain(self.metrics)}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        self.path = path
        return path

    @classmethod
    def load(cls, path: Path, *, device: torch.device | None = None) -> "Judge":
        path = Path(path)
        if not path.is_file():
            raise JudgeError(f"judge file {path} does not exist")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt or code-carrying files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise JudgeError(f"judge file {path} is corrupt or not a cgan-eval judge ({first}); delete it to retrain") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise JudgeError(f"{path} is not a cgan-eval judge file (no '{FORMAT}' format tag); delete it to retrain")
        if obj.get("format_version") != FORMAT_VERSION:
            raise JudgeError(f"{path} has judge format {obj.get('format_version')}; this version reads "
                             f"{FORMAT_VERSION} (delete it to retrain)")
        config = JudgeConfig.from_dict(obj["config"])
        names = list(obj["class_names"])
        model = build(config.arch, len(names), input_size=config.size_for(obj["img_size"]), width=config.width,
                      feature_dim=config.feature_dim)
        try:
            model.load_state_dict(obj["state_dict"], strict=True)
        except RuntimeError as exc:
            raise JudgeError(f"judge file {path} does not match its own config ({str(exc).splitlines()[0]})") from None
        out = cls(model, config, names, img_size=obj["img_size"], dataset=obj.get("dataset", {}),
                  metrics=obj.get("metrics", {}), device=device)
        out.path = path
        return out


def dataset_key(image_set: Any) -> str:
    """A short fingerprint of an ImageSet's images and labels: its cache file name when it has one (which
    already hashes the source files and size), else a hash of the pixels."""
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


def split_key(split: Split) -> str:
    h = hashlib.sha256(split.kind.encode())
    for part in (split.train, split.val, split.held):
        h.update(np.asarray(part, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def train_judge(image_set: Any, split: Split, config: JudgeConfig, *, device: torch.device,
                checkpoint: Path | None = None, ident: str = "", log: Log = print,
                small_cache: dict[int, np.ndarray] | None = None, role: str = "judge") -> Judge:
    """Train one judge on ``split.fit``, stop early on ``split.val``, and measure it on ``split.held``
    (``role`` names it in the log: a judge, or the trainer's stage reader)."""
    config.validate()
    labels = np.asarray(image_set.labels, dtype=np.int64)
    names = list(image_set.class_names)
    k = len(names)
    img_size = int(image_set.images.shape[-1])
    size = config.size_for(img_size)
    fit_idx = split.fit
    for side, idx in (("fit", fit_idx), ("validation", split.val), ("held-out", split.held)):
        missing = [names[s] for s in range(k) if not (labels[idx] == s).any()]
        if missing:
            raise JudgeError(f"the {side} part of the {split.kind}-level split has no image of {', '.join(missing)}; "
                             "every stage needs at least 3 subjects (or images) to train and measure a judge")
    t0 = time.perf_counter()
    if small_cache is not None and size in small_cache:
        small = small_cache[size]
    else:
        small = resize_u8(np.asarray(image_set.images), size)
        if small_cache is not None:
            small_cache[size] = small
    torch.manual_seed(config.seed)
    model = build(config.arch, k, input_size=size, width=config.width, feature_dim=config.feature_dim)
    name = f"{role} {judge_name(config, img_size)}"
    log(f"training {name} on {len(fit_idx):,} images ({split.kind}-level split; {len(split.val):,} for early "
        f"stopping, {len(split.held):,} held out) on {device.type} ...")
    history = fit(model, small[fit_idx], labels[fit_idx], small[split.val], labels[split.val], num_classes=k,
                  config=config, device=device, name=name, checkpoint=checkpoint, ident=ident, log=log)
    judge = Judge(model, config, names, img_size=img_size, dataset={}, metrics={}, device=device)
    held = accuracy_summary(confusion(labels[split.held], judge.predict(small[split.held]), k))
    seconds = time.perf_counter() - t0
    judge.dataset = {"key": dataset_key(image_set), "split": split_key(split), "split_kind": split.kind,
                     "description": str(getattr(image_set, "description", "")), "img_size": img_size, "n": len(labels)}
    judge.metrics = {"held_out": held, "fit": history, "n_fit": int(len(fit_idx)), "n_val": int(len(split.val)),
                     "n_held_out": int(len(split.held)), "train_seconds": round(seconds, 2), "device": device.type}
    log(f"{name}: held-out balanced accuracy {held['balanced_accuracy']:.3f} (per stage: "
        f"{', '.join(f'{v:.3f}' for v in held['per_class'])}) after {history['epochs']} epochs in {seconds:.0f} s")
    return judge


def cache_file(cache_dir: Path, image_set: Any, split: Split, config: JudgeConfig) -> Path:
    """``<cache>/judges/<arch>-<key>.pt``, keyed on the data fingerprint, the split and the config."""
    ident = json.dumps({"data": dataset_key(image_set), "split": split_key(split), "config": config.to_dict(),
                        "v": FORMAT_VERSION}, sort_keys=True)
    return Path(cache_dir) / "judges" / f"{config.arch}-{hashlib.sha256(ident.encode()).hexdigest()[:20]}.pt"


def get_judge(image_set: Any, split: Split, config: JudgeConfig, *, cache_dir: Path, device: torch.device,
              retrain: bool = False, log: Log = print, small_cache: dict[int, np.ndarray] | None = None) -> Judge:
    """The cached judge for (data, split, config), else trained (resuming a partial fit) and cached."""
    path = cache_file(Path(cache_dir).expanduser(), image_set, split, config)
    if path.exists() and not retrain:
        judge = Judge.load(path, device=device)
        log(f"using the cached judge {judge.name} {path} (held-out balanced accuracy "
            f"{judge.held_out['balanced_accuracy']:.3f})")
        return judge
    partial = path.with_suffix(".partial.pt")
    if retrain and partial.exists():
        partial.unlink()
    judge = train_judge(image_set, split, config, device=device, checkpoint=partial, ident=path.stem, log=log,
                        small_cache=small_cache)
    judge.save(path)
    partial.unlink(missing_ok=True)
    log(f"saved the judge to {path}")
    return judge


def with_seed(config: JudgeConfig, seed: int) -> JudgeConfig:
    return replace(config, seed=seed)
