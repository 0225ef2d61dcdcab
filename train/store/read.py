"""Read back what ``cgan-train`` (or the original project) wrote, safely (``torch.load(weights_only=True)``,
never pickled code): a full checkpoint to resume from (:func:`load_checkpoint`), and a Generator from any
checkpoint we accept (:func:`load_generator`; the exporter and the evaluator use it).

Accepted by :func:`load_generator`, all detected from their content:

- the original project's ``cDCGAN_generator.pth``: ``{"model": state_dict, "z_dim", "num_classes", "img_size"}``;
- ours (same file plus ``"config"``, ``"provenance"``, ``"ema"``), written by ``cgan-train``;
- a full training checkpoint (``model_output/checkpoints/ckpt_*.pt``): a dict holding the generator
  state under ``"generator"``/``"G"`` (the EMA copy ``"generator_ema"`` is preferred when not None), as
  ``cgan-train`` writes them (see cgan.train.store.write);
- a bare Generator state dict.

The architecture (the original's layers or the conditional-BatchNorm generator's, by their parameter names;
z_dim, classes, width, image size, channels) is read from the tensors, so a
checkpoint needs nothing beside its weights; sizes it declares are cross-checked against them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from cgan.runtime.contract import ORIGINAL_GENERATOR_KEYS, GenKey, stage_names_for
from cgan.runtime.errors import CganError, first_line
from cgan.runtime.fileio import sha256_file


class CheckpointError(CganError):
    """A checkpoint that is missing, unreadable, or would need pickled code to load."""


class ArchitectureError(CheckpointError):
    """A state dict that does not fit the Generator (names the keys or shapes that differ)."""


# Where the generator weights may sit in a checkpoint dict, most preferred first (EMA weights
# generate better images, so a training checkpoint's EMA copy wins over the raw generator).
STATE_KEYS = ("generator_ema", "ema_generator", "G_ema", "ema_G", "generator", "G", "netG", "model", "state_dict")
# Wrappers that prefix parameter names: DistributedDataParallel, torch.compile.
_PREFIXES = ("module.", "_orig_mod.")


# ---------------------------------------------------------------- any file, safely

class PickledCodeError(CganError):
    """A file that needs pickled Python code to load: refused, the code never runs."""


class UnreadableCheckpointError(CganError):
    """A truncated, corrupt or foreign file; ``reason`` is torch's, in a line."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path} is corrupt or not a PyTorch file ({reason})")
        self.path, self.reason = path, reason


# What torch's weights-only unpickler says when a file asks for code (a global, a reduce call), in the
# wordings of the torch versions we support ("Unsupported global: GLOBAL x.y", "unsupported GLOBAL x.y").
_ASKS_FOR_CODE = re.compile(r"unsupported global|add_safe_globals|trying to call reduce|GLOBAL [\w.]+", re.IGNORECASE)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# Lines of torch's text that are advice about the unsafe option, never repeated to a user.
_UNSAFE_ADVICE = re.compile(r"weights.only|re-running|arbitrary code|trusted source|documentation of torch.load", re.IGNORECASE)


def refused_message(path: Path | str, exc: BaseException) -> str | None:
    """The refusal for torch's weights-only unpickler error ``exc``, or None when it is not one.

    Only what the file asked for is kept from torch's text, never its advice to turn the protection off."""
    text = str(exc)
    if not _ASKS_FOR_CODE.search(text):
        return None
    found = _GLOBAL.search(text)
    asked = f" (it asks for {found.group(1)})" if found else ""
    return (f"{path} refused: the file needs pickled code to load{asked}, which is never executed here; "
            "load only checkpoints of plain tensors, such as cgan-train writes")


def safe_load(path: Path | str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: a file needing pickled code raises :class:`PickledCodeError`,
    an unreadable one :class:`UnreadableCheckpointError` (message: the first line of torch's reason)."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about a plain pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refusal = refused_message(path, exc)
        if refusal is not None:
            raise PickledCodeError(refusal) from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
        reason = detail.group(1).strip()[:200] if detail else _torch_reason(exc)
        if _plain_pickle(path):
            reason = "a plain Python pickle, not a file written by torch.save; it is never unpickled here"
        raise UnreadableCheckpointError(path, reason) from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise UnreadableCheckpointError(path, _torch_reason(exc)) from None


def _plain_pickle(path: Path | str) -> bool:
    """Whether ``path`` starts like a pickle of protocol 3 or later (torch.save writes a zip, or protocol 2)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and head[1] >= 3


def _torch_reason(exc: BaseException) -> str:
    """torch's reason in a line: its first line that is not advice to load again with the protection off."""
    for line in str(exc).splitlines():
        if line.strip() and not _UNSAFE_ADVICE.search(line):
            return line.strip()[:200]
    return first_line(exc)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", *,
                    hint: str | None = None) -> dict[str, Any]:
    """Read a full checkpoint, or raise :class:`CganError` saying what is wrong with it.

    ``hint`` ends the message (what the caller wants instead); the default suits ``--resume``.
    """
    from .write import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

    try:
        body = safe_load(path, map_location)
    except PickledCodeError as exc:
        raise PickledCodeError(f"checkpoint {exc}" + (f"; {hint}" if hint else "")) from None
    except UnreadableCheckpointError as exc:
        raise CganError(f"checkpoint {path} is unreadable ({exc.reason}); "
                        f"{hint or 'delete it to resume from the previous one'}") from None
    if not isinstance(body, dict) or body.get("format") != CHECKPOINT_FORMAT:
        raise CganError(f"{path} is not a cgan-train checkpoint" + (f"; {hint}" if hint else ""))
    if body.get("version") != CHECKPOINT_VERSION:
        raise CganError(f"checkpoint {path} has version {body.get('version')}; this cgan-train reads "
                        f"version {CHECKPOINT_VERSION}")
    return body


def read_checkpoint(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors for missing, corrupt or code-carrying files."""

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `cgan-train` or pass a path")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        return safe_load(path)
    except PickledCodeError as exc:
        raise CheckpointError(f"checkpoint {exc}") from None
    except CganError as exc:
        raise CheckpointError(f"checkpoint {exc}") from None


WEIGHTS = ("auto", "ema", "raw")
EMA_KEYS = STATE_KEYS[:4]


def load_generator(checkpoint: Path, weights: str = "auto") -> tuple[Any, dict]:
    """A Generator in eval mode (float32, CPU) and what the checkpoint says about it.

    ``weights`` picks between the two generators of a training checkpoint: ``auto`` takes the EMA copy
    when there is one, ``ema`` insists on it, ``raw`` takes the optimised weights.

    The dict holds ``format`` (original | generator | training-checkpoint | state-dict), ``state_key``,
    ``sha256``, ``config`` (GeneratorConfig as a dict), ``provenance`` (str -> str), ``class_names`` (the
    training run's class folders, None when the file does not say), ``stage_names`` (what the model is
    published with, :func:`cgan.runtime.contract.stage_names_for`) and ``path``.
    """
    checkpoint = Path(checkpoint)
    if weights not in WEIGHTS:
        raise CheckpointError(f"--weights {weights!r} is unknown; choose {', '.join(WEIGHTS)}")
    obj = read_checkpoint(checkpoint)
    state, state_key, fmt = _find_state(obj, checkpoint, weights)
    generator, config = build_from_state(state, source=str(checkpoint))
    declared = obj if isinstance(obj, Mapping) else {}
    _cross_check(config, declared, checkpoint)
    class_names = _class_names(declared, config.num_classes, checkpoint)
    meta = {
        "format": fmt,
        "state_key": state_key,
        "sha256": sha256_file(checkpoint),
        "config": config.to_dict(),
        "provenance": _provenance(declared, fmt),
        "class_names": class_names,
        "stage_names": stage_names_for(config.num_classes, class_names),
        "path": str(checkpoint),
    }
    # a generator file says by its own flag which weights it holds; its provenance may have been copied
    # from a training run that also kept an EMA copy (e.g. raw weights taken out of a training checkpoint)
    if fmt == "generator" and declared.get("ema") is False and str(meta["provenance"].get("ema", "")).startswith("true"):
        meta["provenance"]["ema"] = "false (the file holds the raw weights; its run also kept an EMA copy)"
    return generator, meta


def build_from_state(state: Mapping[str, Any], source: str = "state dict") -> tuple[Any, Any]:
    """Infer the GeneratorConfig from tensor shapes, build the Generator and load ``state`` strictly."""
    import torch
    from ..models import GeneratorConfig, build_generator

    state = _strip_prefixes(state)
    config = _infer_cbn_config(state, source) if "to_image.weight" in state else _infer_config(state, source)
    try:
        config = GeneratorConfig(**config)
    except ValueError as exc:
        raise ArchitectureError(f"{source}: weights describe an unsupported Generator ({exc})") from None
    generator = build_generator(config)
    _check_keys(generator.state_dict(), state, source)
    generator.load_state_dict({k: v for k, v in state.items()}, strict=True)
    generator = generator.to(dtype=torch.float32).eval()
    return generator, config


# ---------------------------------------------------------------- internals

def _is_state_dict(value: Any) -> bool:
    import torch

    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) for k in value)
        and all(isinstance(v, torch.Tensor) for v in value.values())
    )


def _find_state(obj: Any, path: Path, weights: str = "auto") -> tuple[Mapping[str, Any], str, str]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(obj).__name__}; expected a dict with a Generator state dict "
            "(the original's {'model': state_dict, 'z_dim', 'num_classes', 'img_size'} or a training checkpoint)"
        )
    if _is_state_dict(obj):
        if weights == "ema":
            raise CheckpointError(f"checkpoint {path} is a bare state dict with no EMA copy; use --weights auto or raw")
        return obj, "", "state-dict"
    keys_in_order = {"auto": STATE_KEYS, "ema": EMA_KEYS, "raw": STATE_KEYS[4:]}[weights]
    for key in keys_in_order:
        if key in obj and _is_state_dict(obj[key]):
            if key == "model":
                fmt = "original" if set(obj) <= set(ORIGINAL_GENERATOR_KEYS) else "generator"
                if weights == "raw" and obj.get("ema") is True:
                    raise CheckpointError(
                        f"{path} holds the EMA weights of its run; for the raw weights export one of its "
                        "training checkpoints (checkpoints/ckpt_*.pt) with --weights raw"
                    )
            else:
                fmt = "training-checkpoint"
            return obj[key], key, fmt
    if weights == "ema" and any(k in obj and obj[k] is None for k in EMA_KEYS):
        raise CheckpointError(f"checkpoint {path} holds no EMA weights (its run was trained without --ema); "
                              "use --weights auto or raw")
    keys = ", ".join(sorted(str(k) for k, v in obj.items() if v is not None)[:12])
    raise CheckpointError(
        f"checkpoint {path} has no {'EMA ' if weights == 'ema' else ''}Generator state dict "
        f"(looked for {', '.join(keys_in_order)}); its keys are: {keys}"
    )


def _strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def _infer_config(state: Mapping[str, Any], source: str) -> dict[str, int]:
    emb = state.get("label_emb.weight")
    first = state.get("net.0.weight")
    convs = sorted(
        int(m.group(1))
        for k, v in state.items()
        if (m := re.fullmatch(r"net\.(\d+)\.weight", k)) and getattr(v, "dim", lambda: 0)() == 4
    )
    if emb is None or first is None or emb.dim() != 2 or first.dim() != 4 or len(convs) < 2:
        keys = ", ".join(list(state)[:8]) + (" ..." if len(state) > 8 else "")
        raise ArchitectureError(
            f"{source} is not a dementia-cgan Generator state dict: expected 'label_emb.weight' [C, C] and "
            f"ConvTranspose weights 'net.0.weight', 'net.3.weight', ...; found keys: {keys}"
        )
    num_classes = int(emb.shape[0])
    last = state[f"net.{convs[-1]}.weight"]
    return {
        "z_dim": int(first.shape[0]) - num_classes,
        "num_classes": num_classes,
        "img_size": 2 ** (len(convs) + 1),
        "channels": int(last.shape[1]),
        "width": int(first.shape[1]),
    }


def _infer_cbn_config(state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The conditional-BatchNorm generator's sizes (cgan.train.cbn): ``convs.<i>.weight`` and ``to_image.weight``."""
    emb, last = state.get("label_emb.weight"), state["to_image.weight"]
    convs = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"convs\.(\d+)\.weight", k)))
    if emb is None or emb.dim() != 2 or not convs or state["convs.0.weight"].dim() != 4 or last.dim() != 4:
        raise ArchitectureError(f"{source} looks like a conditional-BatchNorm generator but lacks 'label_emb.weight' "
                                "or 'convs.0.weight' [z_dim + C, width, 4, 4]")
    num_classes, first = int(emb.shape[0]), state["convs.0.weight"]
    return {"z_dim": int(first.shape[0]) - num_classes, "num_classes": num_classes, "img_size": 2 ** (len(convs) + 2),
            "channels": int(last.shape[1]), "width": int(first.shape[1]), "arch": "cbn"}


def _check_keys(expected: Mapping[str, Any], given: Mapping[str, Any], source: str) -> None:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} (Generator has {tuple(expected[k].shape)})"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            parts.append(f"{label}: {', '.join(items[:5])}{more}")
    raise ArchitectureError(f"{source} does not match the dementia-cgan Generator: {'; '.join(parts)}")


def _declared_sizes(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Sizes the checkpoint states about itself: top-level (original format) or in its config dict."""
    found: dict[str, Any] = {}
    config = obj.get("config")
    sources = [config] if isinstance(config, Mapping) else []
    if isinstance(config, Mapping):
        sources += [v for k, v in config.items() if k in ("generator", "model", "model_config") and isinstance(v, Mapping)]
    sources.append(obj)
    for src in sources:
        for name in ("z_dim", "num_classes", "img_size", "channels"):
            value = src.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                found.setdefault(name, value)
    return found


def _cross_check(config: Any, obj: Mapping[str, Any], path: Path) -> None:
    declared = _declared_sizes(obj)
    wrong = [f"{k}={v} but its weights have {k}={getattr(config, k)}" for k, v in declared.items() if getattr(config, k) != v]
    arch = obj.get("config", {}).get("arch") if isinstance(obj.get("config"), Mapping) else None
    if isinstance(arch, str) and arch != config.arch:
        wrong.append(f"arch={arch} but its weights are those of the {config.arch} generator")
    if wrong:
        raise ArchitectureError(f"checkpoint {path} contradicts itself: it says {'; '.join(wrong)}")


def _class_names(obj: Mapping[str, Any], num_classes: int, path: Path) -> list[str] | None:
    """The class folders the weights were trained on, as the generator file (or a training checkpoint) records them."""
    names = obj.get(GenKey.CLASS_NAMES)
    if names is None:
        return None
    if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"checkpoint {path}: '{GenKey.CLASS_NAMES}' must be a list of names, got {type(names).__name__}")
    if len(names) != num_classes:
        raise ArchitectureError(f"checkpoint {path} contradicts itself: it names {len(names)} classes "
                                f"({', '.join(names)}) but its weights have {num_classes}")
    return list(names)


def _provenance(obj: Mapping[str, Any], fmt: str) -> dict[str, str]:
    """Provenance fields (short names: training_data, epochs, steps, created, tool_version, seed ...)."""
    prov: dict[str, str] = {}
    given = obj.get("provenance")
    if isinstance(given, Mapping):
        prov.update({str(k): str(v) for k, v in given.items() if v is not None})
    for key in ("training_data", "created", "tool_version"):  # top-level in cgan-train's full checkpoints
        if isinstance(obj.get(key), str):
            prov.setdefault(key, obj[key])
    if "epochs" not in prov and isinstance(obj.get("epoch"), int):
        batch = obj.get("batch")
        prov["epochs"] = f"{obj['epoch']} + {batch} steps" if isinstance(batch, int) and batch > 0 else str(obj["epoch"])
    if "steps" not in prov:
        for key in ("steps", "step", "global_step"):
            value = obj.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                prov["steps"] = str(value)
                break
    if "ema" in obj and isinstance(obj["ema"], bool):
        prov.setdefault("ema", str(obj["ema"]).lower())
    if fmt == "original":
        prov.setdefault("training_data", "not recorded (checkpoint in the original project's format)")
    return prov
