"""Training throughput on CPU at 128 px, batch 16 and 32: cgan-train's step against the present step
(before it was made faster) and the original loop.

"Original loop" is a plain reimplementation of the notebook's: the same models, fp32, a
``DataLoader`` over a dataset that opens and decodes every image file with PIL at each step
(grayscale, resize, ``x/255``, normalise 0.5/0.5, as torchvision's ImageFolder + transforms), a
``WeightedRandomSampler`` with weight 1/class count, and the step D(real), D(G(z)) then G against
D(G(z)) with D's gradients computed in the G step too. "present step" is cgan-train's step as it
was before it was made faster (a faithful copy in ``bench/_present_step.py``: three D passes, three
spectral-norm power iterations, per-parameter Adam, NCHW), fed like the new one. "cgan-train" is
``TrainingRun.train_step`` with cgan-train's defaults, fed from the uint8 memory-mapped cache.

Runs only with ``pytest bench/test_bench_train.py --benchmark-only`` (a few minutes on 2 cores).
The headline is ``test_train_interleaved_ratio[16]`` and ``[32]``: the three loops alternate step
by step, so load changes on a shared machine hit all alike. ``CGAN_BENCH_THREADS`` sets torch's
thread count for every variant (default: torch's choice); ``CGAN_BENCH_COMPILE=1`` adds
cgan-train ``--compile`` to both tests (its first steps compile for minutes; they are warm-up).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench._helpers import Interleaved, cpu_peak_gflops

pytestmark = pytest.mark.bench_long  # run with --bench-long (bench/README.md)

IMG = 128
BATCHES = (16, 32)
N_IMAGES = 64
STEPS = 1  # optimizer steps per timed call
ROUNDS = 2  # timed calls per variant, after one warm-up call
PAIRS = 3  # interleaved rounds (one step of each loop) of the headline ratio, after one warm-up each
COMPILE = os.environ.get("CGAN_BENCH_COMPILE") == "1"


def _quiet(_msg: str) -> None:
    pass


def _cpu_has_native_bf16() -> bool:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@pytest.fixture(scope="module")
def torch_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    if os.environ.get("CGAN_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["CGAN_BENCH_THREADS"]))
    yield torch.get_num_threads()
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory, torch_threads):
    """The synthetic OASIS-like set as PNG files (what the original reads) and as our memmap cache."""
    from cgan.train.data import load_image_set
    from cgan.train.synth import make_synthetic_set

    root = tmp_path_factory.mktemp("bench_train")
    folder = make_synthetic_set(root / "syn", n=N_IMAGES, seed=0, img_size=IMG, log=_quiet)
    image_set = load_image_set(folder, img_size=IMG, cache_dir=root / "cache", log=_quiet)
    return folder, image_set


# ---------------------------------------------------------------- the original loop

def original_loop(folder: Path, batch: int, seed: int = 42):
    """A callable doing ``n`` steps of the original notebook's loop (see the module docstring)."""
    import torch
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

    from cgan.runtime.contract import OASIS_FOLDERS
    from cgan.train.models import Generator, GeneratorConfig, build_discriminator

    files = [(p, stage) for stage, name in enumerate(OASIS_FOLDERS) for p in sorted((folder / name).glob("*.png"))]

    class Folder(Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            path, label = files[i]
            with Image.open(path) as im:
                gray = im.convert("L").resize((IMG, IMG), Image.Resampling.BILINEAR)
            x = torch.from_numpy(np.asarray(gray, dtype=np.uint8).copy()).float().div(255.0)
            return ((x - 0.5) / 0.5).unsqueeze(0), label

    labels = torch.tensor([s for _, s in files])
    weights = 1.0 / torch.bincount(labels).double()[labels]
    sampler = WeightedRandomSampler(weights, num_samples=len(files), replacement=True,
                                    generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(Folder(), batch_size=batch, sampler=sampler, num_workers=0)

    torch.manual_seed(seed)
    cfg = GeneratorConfig(img_size=IMG)
    G, D = Generator(cfg), build_discriminator("projection", cfg)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=5e-5, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    batches = iter(loader)

    def steps(n: int = STEPS) -> int:
        nonlocal batches
        for _ in range(n):
            try:
                real, lab = next(batches)
            except StopIteration:
                batches = iter(loader)
                real, lab = next(batches)
            b = real.size(0)
            z = torch.randn(b, cfg.z_dim, 1, 1)
            fake = G(z, lab)
            loss_d = bce(D(real, lab), torch.ones(b)) + bce(D(fake.detach(), lab), torch.zeros(b))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = bce(D(fake, lab), torch.ones(b))
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
        return n * batch

    return steps


# ---------------------------------------------------------------- cgan-train's step, new and present

def cgan_train_loop(image_set, batch: int, *, present: bool = False, **overrides):
    """A callable doing ``n`` steps of cgan-train's loop on ``image_set`` (nothing written to disk);
    ``present``: with the step as it was before it was made faster (its defaults too: NCHW tensors)."""
    import torch

    from bench._present_step import as_present, present_step
    from cgan.train.loop import ddp
    from cgan.train.loop.run import TrainConfig, TrainingRun, epoch_order, iter_batches, resolve_precision, to_model_input

    if present:
        overrides = {"channels_last": False, **overrides}
    config = TrainConfig(img_size=IMG, batch_size=batch, device="cpu", quiet=True, **overrides)
    config.validate()
    device = torch.device("cpu")
    run = TrainingRun(config, image_set, ddp.DistInfo(), device, resolve_precision(config.precision, device), _quiet)
    if config.init_from is not None:  # a warm start, as cgan-train --init-from does it (D warm-up off: full steps)
        from cgan.train.store.read_init import read_init

        run.load_init(read_init(config), config.init_from)
    if config.reader_weight > 0:  # the frozen stage reader's network, as cgan-train fits it (its weights do not change the cost)
        run.reader = _unfitted_reader(image_set, device)
    step = (lambda x, y: present_step(run, x, y)) if present else run.train_step
    if present:
        as_present(run)
    state = {"epoch": 0, "it": None}

    def next_batch():
        while True:
            if state["it"] is None:
                order = epoch_order(run.labels, run.gen_config.num_classes, seed=config.seed, epoch=state["epoch"],
                                    balance=True)
                state["it"] = iter_batches(run.images, run.labels, order, batch, 0, config.workers)
            found = next(state["it"], None)
            if found is not None:
                return found
            state["epoch"] += 1
            state["it"] = None

    def steps(n: int = STEPS) -> int:
        for _ in range(n):
            u8, lab = next_batch()
            step(to_model_input(u8, device, config.channels_last), torch.from_numpy(lab))
        return n * batch

    return steps


def _unfitted_reader(image_set, device):
    """A :class:`~cgan.train.loop.reader.StageReader` of the reader's own network and input size, not fitted: the
    bench set is too small to split by subject, and a step costs the same whatever the weights."""
    import torch

    from cgan.train.eval.judges import Judge
    from cgan.train.eval.networks import build
    from cgan.train.loop.reader import READER_CONFIG, StageReader

    k = len(image_set.class_names)
    config = READER_CONFIG
    model = build(config.arch, k, input_size=config.input_size, width=config.width, feature_dim=config.feature_dim)
    judge = Judge(model.eval().requires_grad_(False), config, list(image_set.class_names), img_size=IMG, dataset={},
                  metrics={}, device=device)
    return StageReader(judge=judge, targets=torch.full((k, k), 1.0 / k), split=None)


ORIGINAL = "original loop (PIL decode per step, fp32)"
PRESENT = "present step (the step before it was made faster), fp32"
VARIANTS = {
    ORIGINAL: None,
    PRESENT: {"present": True},
    "cgan-train fp32 (defaults)": {},
    "cgan-train fp32 NCHW": {"channels_last": False},
    "cgan-train bf16 autocast": {"precision": "bf16"},
    **({"cgan-train fp32 --compile": {"compile": True}} if COMPILE else {}),
}


def make_loop(variant: str, folder: Path, image_set, batch: int):
    overrides = VARIANTS[variant]
    return original_loop(folder, batch) if overrides is None else cgan_train_loop(image_set, batch, **overrides)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_train_throughput(benchmark, image_files, torch_threads, variant, batch):
    folder, image_set = image_files
    if "bf16" in variant and not _cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU (AVX512-BF16/AMX): autocast would only measure emulation")
    fn = make_loop(variant, folder, image_set, batch)
    benchmark.group = f"cpu training, {IMG} px, batch {batch}"
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=2 if "compile" in variant else 1, iterations=1)
    median = float(benchmark.stats.stats.median)
    benchmark.extra_info.update(kind="train", device="cpu", variant=variant, img_size=IMG, batch=batch,
                                steps_per_round=STEPS, threads=torch_threads,
                                images_per_s=round(STEPS * batch / median, 3))


def step_gflop(steps) -> float:
    """GFLOP of one call of ``steps`` as torch counts them (convolutions and matrix products, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        steps()
    return counter.get_total_flops() / 1e9


@pytest.mark.parametrize("batch", BATCHES)
def test_train_interleaved_ratio(benchmark, image_files, torch_threads, capsys, batch):
    """The original loop, the present step and cgan-train alternating step by step; speedups are
    ratios of median step times measured in the same rounds."""
    folder, image_set = image_files
    names = [ORIGINAL, PRESENT, "cgan-train fp32 (defaults)"] + (["cgan-train fp32 --compile"] if COMPILE else [])
    loops = {name: make_loop(name, folder, image_set, batch) for name in names}
    for name, fn in loops.items():
        fn()  # warm-up: allocators, oneDNN primitives
        if "compile" in name:
            fn()  # the G step's D (eval mode) compiles at the first call too
    gflop = {name: step_gflop(fn) / (batch * STEPS) for name, fn in loops.items() if "compile" not in name}
    timing = Interleaved(loops)

    benchmark.group = "cpu training ratio"
    benchmark.pedantic(timing.round, rounds=PAIRS, warmup_rounds=0, iterations=1)
    med = timing.medians()
    new = med["cgan-train fp32 (defaults)"]
    info = dict(kind="train_ratio", device="cpu", img_size=IMG, batch=batch, threads=torch_threads,
                rounds=timing.rounds_each(),
                original_images_per_s=round(batch * STEPS / med[ORIGINAL], 3),
                present_images_per_s=round(batch * STEPS / med[PRESENT], 3),
                cgan_train_images_per_s=round(batch * STEPS / new, 3),
                speedup_vs_present=round(med[PRESENT] / new, 3),
                speedup_vs_original=round(med[ORIGINAL] / new, 3))
    # The work of a step, counted by torch (FlopCounterMode: 2 flops per multiply-add, every forward and
    # backward kernel): what a loop may gain at equal arithmetic speed is the ratio of the work.
    peak = cpu_peak_gflops()
    for key, name in (("original", ORIGINAL), ("present", PRESENT), ("cgan_train", "cgan-train fp32 (defaults)")):
        achieved = gflop[name] * batch * STEPS / med[name]
        info[f"{key}_gflop_per_image"] = round(gflop[name], 3)
        info[f"{key}_gflops"] = round(achieved, 1)
        info[f"{key}_fraction_of_avx512_peak"] = round(achieved / peak["avx512_gflops"], 3) if "avx512_gflops" in peak else None
    info.update(work_ratio_present=round(gflop[PRESENT] / gflop["cgan-train fp32 (defaults)"], 3),
                work_ratio_original=round(gflop[ORIGINAL] / gflop["cgan-train fp32 (defaults)"], 3), peak=peak)
    if COMPILE:
        compiled = med["cgan-train fp32 --compile"]
        info.update(compiled_images_per_s=round(batch * STEPS / compiled, 3),
                    compiled_speedup_vs_present=round(med[PRESENT] / compiled, 3),
                    compiled_speedup_vs_original=round(med[ORIGINAL] / compiled, 3))
    benchmark.extra_info.update(info)
    with capsys.disabled():
        line = ", ".join(f"{name} {batch * STEPS / t:.2f} img/s" for name, t in med.items())
        print(f"\ntraining throughput, CPU, {IMG} px, batch {batch}, {torch_threads} thread(s): {line} -> "
              f"cgan-train {info['speedup_vs_present']:.2f}x the present step, {info['speedup_vs_original']:.2f}x "
              f"the original (median of {timing.rounds_each()} interleaved rounds)")
    assert info["speedup_vs_present"] > 0


# The conditioning-only fine-tune (--tune stage) against a full fine-tune, both warm-started from the
# embedded default with the levers' recipe: what freezing G's body (or all but its first blocks, or only
# its BatchNorm statistics) saves per step, what a narrower discriminator saves beside it, and what the frozen
# stage reader's term (--reader-weight) costs.
WARM = dict(init_from="default", minibatch_std=True, diffaugment="translation,cutout", aux_weight=0.5, aux_head="twin")
TUNE_VARIANTS = {
    "full fine-tune": dict(WARM),
    "--tune stage": dict(WARM, tune="stage"),
    "--tune stage --generator cbn": dict(WARM, tune="stage", generator="cbn"),
    "--tune stage --disc-width 32": dict(WARM, tune="stage", disc_width=32),
    "--tune stage --tune-blocks 3": dict(WARM, tune="stage", tune_blocks=3),
    "full fine-tune --freeze-bn": dict(WARM, freeze_bn=True),
    "full fine-tune --reader-weight 1": dict(WARM, reader_weight=1.0),
}


def test_tune_stage_step_ratio(benchmark, image_files, torch_threads, capsys):
    """Median step times of the variants above, alternating step by step at batch 16, and each one's work
    as torch counts it: the ratios to the full fine-tune's step."""
    pytest.importorskip("onnx")
    _, image_set = image_files
    loops = {name: cgan_train_loop(image_set, 16, **overrides) for name, overrides in TUNE_VARIANTS.items()}
    for fn in loops.values():
        fn()  # warm-up
    gflop = {name: step_gflop(fn) / 16 for name, fn in loops.items()}
    timing = Interleaved(loops)
    benchmark.group = "cpu fine-tune step ratio"
    benchmark.pedantic(timing.round, rounds=PAIRS, warmup_rounds=0, iterations=1)
    med = timing.medians()
    full = med["full fine-tune"]
    info = {"kind": "tune_ratio", "device": "cpu", "img_size": IMG, "batch": 16, "threads": torch_threads,
            "rounds": timing.rounds_each(),
            **{f"{name}: time ratio": round(t / full, 3) for name, t in med.items()},
            **{f"{name}: work ratio": round(gflop[name] / gflop["full fine-tune"], 3) for name in med},
            **{f"{name}: images/s": round(16 / t, 3) for name, t in med.items()}}
    benchmark.extra_info.update(info)
    with capsys.disabled():
        print("\nfine-tune step, CPU, 128 px, batch 16: " + ", ".join(
            f"{name} {t / full:.2f}x the time ({gflop[name] / gflop['full fine-tune']:.2f}x the work)"
            for name, t in med.items()))
    assert all(t > 0 for t in med.values())
