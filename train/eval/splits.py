"""Held-out splits by subject: no brain on both sides.

Real OASIS slices come many per subject; a split by image puts slices of one brain on both sides and
inflates every held-out figure (Yagis et al., Sci Rep 2021). The subject id is parsed from the file
name (``OAS1_0001_MR1_...`` -> ``OAS1_0001``) or by a user's regular expression (its first group, or
the whole match); subjects are held out stratified by stage (a subject's stage is the stage of most of
its images). Where no file name yields a subject (an in-memory set, or files named without one), the split
falls back to images, and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Sequence

import numpy as np

from cgan.runtime.errors import CganError

OASIS_SUBJECT = r"(OAS\d_\d{4})_MR\d"


class SplitError(CganError):
    """A split that cannot be made as asked (a bad --group-regex, too few subjects)."""


def compile_group_regex(pattern: str | None) -> re.Pattern[str]:
    if pattern is None:
        return re.compile(OASIS_SUBJECT, re.IGNORECASE)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SplitError(f"--group-regex {pattern!r} is not a valid regular expression ({exc}); "
                         "give a pattern whose first group (or whole match) is the subject id") from None


def subject_ids(names: Sequence[str] | None, pattern: str | None = None) -> tuple[np.ndarray | None, str]:
    """The subject of each file name (``None`` where nothing matches) and a note.

    Returns ``(None, note)`` when no name yields a subject; unmatched names among matched ones each
    become a subject of their own (they cannot leak, having no other slice), and the note counts them.
    """
    if not names:
        return None, "no file names (an in-memory or built-in set)"
    regex = compile_group_regex(pattern)
    found: list[str | None] = []
    for name in names:
        base = name if pattern is not None else PurePosixPath(name).name
        m = regex.search(base)
        found.append(None if m is None else (m.group(1) if m.groups() and m.group(1) is not None else m.group(0)))
    matched = sum(f is not None for f in found)
    what = f"--group-regex {pattern!r}" if pattern is not None else "OASIS names (OAS1_XXXX_MR1...)"
    if matched == 0:
        return None, f"no file name matches {what}"
    note = f"subjects parsed from {what}"
    if matched < len(found):
        note += f"; {len(found) - matched} of {len(found)} names do not match and count as one subject each"
    ids = np.array([f if f is not None else f"\0{i}" for i, f in enumerate(found)], dtype=object)
    return ids, note


@dataclass
class Split:
    """Indices into an image set: ``train`` (of which ``val`` is a held-out part for early stopping) and ``held``."""

    train: np.ndarray
    val: np.ndarray
    held: np.ndarray
    kind: str  # "subject" or "image"
    note: str
    groups: np.ndarray | None = None

    @property
    def fit(self) -> np.ndarray:
        """The training side without its validation part: what a network is fitted on."""
        return np.setdiff1d(self.train, self.val, assume_unique=True)

    def describe(self, labels: np.ndarray, k: int) -> dict[str, Any]:
        """Images and subjects per stage on each side (what the report records)."""
        labels = np.asarray(labels)
        out: dict[str, Any] = {"kind": self.kind, "note": self.note}
        for side, idx in (("fit", self.fit), ("validation", self.val), ("held_out", self.held)):
            out[f"images_{side}"] = np.bincount(labels[idx], minlength=k).tolist()
            if self.groups is not None:
                out[f"subjects_{side}"] = [len(set(self.groups[idx[labels[idx] == s]])) for s in range(k)]
        return out


def _hold_out(labels: np.ndarray, groups: np.ndarray, pool: np.ndarray, fraction: float,
              rng: np.random.Generator) -> np.ndarray:
    """Indices of ``pool`` whose group is held out: ``round(fraction * subjects)`` of every stage's
    subjects (at least one when the stage has two or more), a subject's stage being its majority label."""
    subj, inv = np.unique(groups[pool], return_inverse=True)
    stage_of = np.array([np.bincount(labels[pool][inv == j]).argmax() for j in range(len(subj))])
    chosen = np.zeros(len(subj), dtype=bool)
    for c in np.unique(stage_of):
        members = np.flatnonzero(stage_of == c)
        members = members[rng.permutation(len(members))]
        n = int(round(fraction * len(members)))
        n = min(max(n, 1), len(members) - 1) if len(members) >= 2 else 0
        chosen[members[:n]] = True
    return np.sort(pool[chosen[inv]])


def make_split(labels: np.ndarray, groups: np.ndarray | None, *, holdout: float = 0.2, val: float = 0.15,
               seed: int = 0, note: str = "") -> Split:
    """Hold out ``holdout`` of every stage's subjects (or images, with ``groups=None``), then ``val`` of
    the rest as a validation part; seeded, both by subject when groups are given."""
    labels = np.asarray(labels, dtype=np.int64)
    kind = "subject" if groups is not None else "image"
    g = np.asarray(groups, dtype=object) if groups is not None else np.arange(len(labels)).astype(object)
    everything = np.arange(len(labels))
    rng = np.random.default_rng([seed, 0xE7A1])
    held = _hold_out(labels, g, everything, holdout, rng)
    train = np.setdiff1d(everything, held, assume_unique=True)
    val_idx = _hold_out(labels, g, train, val, rng)
    return Split(train=train, val=val_idx, held=held, kind=kind, note=note, groups=groups)


def split_image_set(image_set: Any, *, group_regex: str | None = None, holdout: float = 0.2, val: float = 0.15,
                    seed: int = 0) -> Split:
    """The subject-level split of an ImageSet (its ``files``), or the image-level fallback with its note."""
    groups, note = subject_ids(getattr(image_set, "files", None), group_regex)
    if groups is None:
        if group_regex is not None and getattr(image_set, "files", None):
            raise SplitError(f"--group-regex {group_regex!r} matches none of the {len(image_set.files)} file names "
                             f"(e.g. {image_set.files[0]!r}); fix the pattern or leave it out")
        note = f"no subjects found ({note}): split by image, so slices of one subject may sit on both sides"
    return make_split(image_set.labels, groups, holdout=holdout, val=val, seed=seed, note=note)
