"""The model card in Hugging Face form: ``<model stem>.README.md`` beside the model (never over a README.md
the user has there), uploaded as the repository's ``README.md`` by ``--push-to-hub``."""

from __future__ import annotations

import shlex
from pathlib import Path

from cgan.runtime.contract import DISCLAIMER, INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE, Key, ModelInfo, check_stage_names
from cgan.runtime.markup import md_code as code
from cgan.runtime.markup import md_text as text

CARD_NAME = "README.md"  # the card's name in a Hub repository
CARD_SUFFIX = ".README.md"  # on disk: gen.onnx -> gen.README.md


def card_path_for(model: Path) -> Path:
    """Where the card of ``model`` goes: beside it, named after it (``gen.onnx`` -> ``gen.README.md``)."""
    return model.with_name(model.stem + CARD_SUFFIX)


TAGS = ("onnx", "gan", "conditional-gan", "dcgan", "mri", "alzheimer", "synthetic-data", "medical-imaging", "research-only")


def render_card(info: ModelInfo, model_file: str, *, repo_id: str | None = None) -> str:
    """Markdown with YAML front matter describing ``model_file`` from its metadata alone.

    Nothing read from the model or its file name goes into the card raw: table cells and prose are
    :func:`text` (character references for markup), the command line is shell-quoted and the Python
    example holds Python literals (``repr``); a stage name with a control character is refused.
    """
    check_stage_names(info.stage_names, "the model's stage names", "export it from a training run whose class folders are named so")
    prov = info.provenance
    get = lambda key, default="not recorded": text(prov.get(key) or default)  # noqa: E731
    h = w = info.img_size
    stages = "\n".join(f"| {i} | {text(name)} |" for i, name in enumerate(info.stage_names))
    hub = shlex.quote(f"hf:{repo_id}") if repo_id else "hf:OWNER/REPO"
    tags = "\n".join(f"- {t}" for t in TAGS)
    started_from = f", fine-tuned from {text(prov[Key.INIT_FROM])}" if prov.get(Key.INIT_FROM) else ""
    err = get(Key.PARITY_MAX_ABS_ERR)
    tol = get(Key.PARITY_TOLERANCE)
    providers = text((prov.get(Key.PARITY_PROVIDERS) or "CPUExecutionProvider").replace(",", ", "))
    example_stage = min(2, info.num_classes - 1)
    fp16_note = (
        "\nThis is a float16 model for GPUs: ONNX Runtime's CPU provider runs it in float32 with the"
        "\nfloat16-rounded weights; on CUDA the arithmetic is float16."
        if info.precision == "fp16" else ""
    ) + _int8_note(info)
    return f"""---
license: mit
library_name: onnx
tags:
{tags}
---

# dementia-cgan generator ({info.img_size}x{info.img_size}, {text(info.precision)})

> **{DISCLAIMER}**

A conditional DCGAN generator of synthetic {h}x{w} grayscale brain-MRI slices, conditioned on an
Alzheimer's dementia stage. It was trained with dementia-cgan (`cgan-train`) and exported to ONNX
with `cgan-export`; it runs on ONNX Runtime (CPU or GPU) without PyTorch.
The images are for research, teaching and data-augmentation experiments. They are not real
patients, have not been reviewed by radiologists, and must never be used for diagnosis or any
clinical decision.

## Stages

| `{INPUT_STAGE}` | stage |
| --- | --- |
{stages}

## Inputs and outputs

| name | type | shape | meaning |
| --- | --- | --- | --- |
| `{INPUT_Z}` | float32 | `[N, {info.z_dim}]` | latent noise, standard normal |
| `{INPUT_STAGE}` | int64 | `[N]` | stage index, `0..{info.num_classes - 1}` |
| `{OUTPUT_IMAGE}` | float32 | `[N, {info.channels}, {h}, {w}]` | image in `[{info.output_range[0]:g}, {info.output_range[1]:g}]` |

`N` (the batch) is dynamic. Pixels: `uint8 = clip(round((x + 1) * 127.5), 0, 255)`.
The file is a single self-contained ONNX model (opset {get(Key.OPSET)}, standard operators only)
and carries this description in its metadata (`{Key.Z_DIM}`, `{Key.STAGE_NAMES}`, ...).

## Use it

With the dementia-cgan runtime (`cgan-run`; its base install needs no PyTorch):

```bash
cgan-run --model {shlex.quote(model_file)} --stage {example_stage} --n 16 --seed 0
cgan-run --model {hub} --stage all --n 8
```

With plain ONNX Runtime:

```python
import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession({model_file!r}, providers=["CPUExecutionProvider"])
z = np.random.default_rng(0).standard_normal((4, {info.z_dim}), dtype=np.float32)  # any N(0, 1) noise
stage = np.full(4, {example_stage}, dtype=np.int64)  # stage {example_stage}: {info.stage_names[example_stage]!r}
(images,) = session.run(["{OUTPUT_IMAGE}"], {{"{INPUT_Z}": z, "{INPUT_STAGE}": stage}})
pixels = np.clip(np.rint((images[:, 0] + 1) * 127.5), 0, 255).astype(np.uint8)
Image.fromarray(pixels[0]).save("sample.png")
```

## Provenance

| | |
| --- | --- |
| training data | {get(Key.TRAINING_DATA)} |
| epochs | {get(Key.EPOCHS)} |
| steps | {get(Key.STEPS)}{started_from} |
| weights created | {get(Key.CREATED)} |
| checkpoint sha256 | {code(prov.get(Key.CHECKPOINT_SHA256) or "not recorded")} |
| exported | {get(Key.EXPORTED)} with dementia-cgan {get(Key.TOOL_VERSION)} |
| precision | {text(info.precision)} |

The training data of this file is the one named above. The original project this architecture comes
from trained its model on the Kaggle "imagesoasis" slices of the OASIS study (Non Demented 67,222; Very mild
13,725; Mild 5,002; Moderate 488 images); OASIS data are subject to the OASIS data use terms.
Image quality has not been assessed clinically.

## Measured parity

At export, ONNX Runtime ({providers}) was compared with the PyTorch generator in eval mode (float32)
on fresh random inputs at batch sizes 1, 7 and 64 and every stage: max abs error **{err}** (tolerance
{tol}; one uint8 grey level is 0.0078).{fp16_note}

## Limitations

{_limitations(str(get(Key.TRAINING_DATA, "")))} The generator can produce implausible anatomy. {DISCLAIMER}
"""


def _limitations(training_data: str) -> str:
    """What the training data implies, from its description in the provenance (not assumed)."""
    if training_data.lower().startswith("synthetic"):
        return ("Trained on synthetic slices built from one brain template, not on real MRI: it shows what the "
                "synthetic set holds, not real patients' variety.")
    return ("Dementia-stage data are usually imbalanced (few Moderate-stage images): the rarer stages are "
            "likely less varied and less reliable.")


def _int8_note(info: ModelInfo) -> str:
    """For an int8 model: how it was quantized, how far it is from its fp32 source, and on which CPU that was measured."""
    if info.precision != "int8":
        return ""
    import json

    from .int8 import INT8_CPU_KEY, INT8_ISA_KEY, INT8_MAE_KEY, INT8_MAX_KEY, INT8_P999_KEY, INT8_PSNR_KEY, QUANT_KEY, SOURCE_SHA_KEY

    def pv(key: str, default: str = "?") -> str:
        return text(info.provenance.get(key, default))

    try:
        quant = json.loads(info.provenance.get(QUANT_KEY, "{}"))
    except json.JSONDecodeError:
        quant = {}
    if not isinstance(quant, dict):
        quant = {}
    bar = quant.get("bar", {}) if isinstance(quant.get("bar"), dict) else {}
    kept = ", ".join(code(name) for name in quant.get("fp32_layers", [])) or "none"

    def q(key: str, default: str = "?") -> str:
        return text(quant.get(key, default))

    def b(key: str) -> str:
        return text(bar.get(key, "?"))

    def per_stage(key: str) -> str:
        return ", ".join(f"{v:g}" if isinstance(v, (int, float)) else text(v) for v in quant.get(key, []))

    mode = quant.get("mode", "speed")
    calibration = quant.get("calibration", {})
    images = text(calibration.get("images", "?")) if isinstance(calibration, dict) else "?"
    how = (f"calibrated on {images} of the generator's own images over every stage; "
           "the ConvTranspose layers were rewritten as Conv + DepthToSpace + crop (and the first as a Gemm) so that int8 kernels run them"
           if mode == "speed" else "no calibration: only the weights are rounded, every operator computes in float32")  # fmt: skip
    return f"""

The parity above is the fp32 model's, against PyTorch. This is its **int8** version ({code(f"cgan-export --int8 --int8-mode {mode}")}):
{q("scheme", "static QDQ")}; {how}. Layers kept in fp32: {kept}.
Against the fp32 model (sha256 {code(str(info.provenance.get(SOURCE_SHA_KEY, "not recorded"))[:16] + "...")}) on
{q("validation_images_per_stage")} fresh images per stage, measured on a **{pv(INT8_ISA_KEY)}** CPU
({pv(INT8_CPU_KEY, "not recorded")}):

| | worst stage | per stage |
| --- | ---: | --- |
| largest pixel difference (grey levels) | **{pv(INT8_MAX_KEY)}** | {per_stage("max_grey_per_stage")} |
| 99.9th percentile (grey levels) | **{pv(INT8_P999_KEY)}** | {per_stage("p999_grey_per_stage")} |
| PSNR over the output range (dB) | **{pv(INT8_PSNR_KEY)}** | {per_stage("psnr_db_per_stage")} |
| mean absolute difference (grey levels) | **{pv(INT8_MAE_KEY)}** | {per_stage("mae_grey_per_stage")} |

The bar was: largest ≤ {b("max_grey")}, 99.9th percentile ≤ {b("max_p999_grey")},
PSNR ≥ {b("min_psnr_db")} dB and MAE ≤ {b("max_mae_grey")} on every stage. int8 rounding depends
on the CPU's int8 instructions: on a CPU of another class the runtime says so when it loads this model."""
