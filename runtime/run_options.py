"""``cgan-run``'s options, written once: each is a field of :class:`RunOptions` carrying its flags and help.
The argparse parser (:func:`build_parser`) and the keywords of :func:`cgan.runtime.cli.run` are both read
from these fields, and :class:`RunConfig` (what a run was asked to do, printed and saved) extends them.
Adding an option is one field here, then using it in ``run()``.

The command line is parsed with the standard library rather than typer/click: those cost ~25-30 ms of
imports on every start (measured with ``python -X importtime``), a tenth of ``cgan-run --n 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Optional

from .contract import DISCLAIMER, LAST_EXPORT
from .manifest import MANIFEST_NAME
from .noise import NOISE_VERSION

DEFAULT_OUT = Path("generated")
GRID_IMAGES = 16  # images per stage on a --grid sheet
PROGRESSION_ROWS = 32  # samples on a --progression sheet


def whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def folder(value: str) -> Path:
    """A folder name; an empty one is refused (it would be the current folder, which "." says plainly)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a folder name, got an empty string (. is the current folder)")
    return Path(value)


def option(default: Any, *flags: str, help: str, type: Any = None, metavar: str | None = None,
           switch: bool = False, record: bool = True) -> Any:
    """A field that is a cgan-run option. ``flags``: its names, the first the main one (the others are short
    forms or former names kept as aliases); ``switch``: a flag without a value; ``record``: part of the run's
    printed and saved config (:class:`RunConfig`)."""
    cli = {"flags": flags, "help": help, "type": type, "metavar": metavar, "switch": switch, "record": record}
    return field(default=default, metadata={"cli": cli})


@dataclass(frozen=True)
class RunOptions:
    """Every cgan-run option with its default; ``run(**options)`` takes these names."""

    stage: str = option("all", "--stage", "-s", metavar="STAGE", record=False,
        help="Stage: a number (0-3), a name (case-insensitive: non-demented, very-mild, mild, moderate), a comma list, or all (default).")
    n: int = option(16, "--n", "-n", type=whole, metavar="N", help="Images per stage (default 16).")
    out: Optional[Path] = option(None, "--out", "-o", type=folder, metavar="DIR", help=f"Output folder (default: {DEFAULT_OUT}/).")
    layout: str = option("flat", "--layout",
        help="flat (default): all files in --out; oasis: one Kaggle OASIS folder per stage (Non Demented, ...).")
    format: str = option("png", "--format", metavar="FORMAT",
        help="png (default): one 8-bit PNG per image; npy: one float32 stack (n, 1, H, W) per stage, values -1..1, with a JSON sidecar; none: no image files (with --grid).")
    grid: Optional[Path] = option(None, "--grid", type=Path, metavar="FILE.png",
        help=f"Also write a labelled contact sheet (PNG): one row per stage, its first {GRID_IMAGES} images.")
    progression: bool = option(False, "--progression", switch=True,
        help=f"Contact sheet of the same noise at every stage: one row per sample (first {PROGRESSION_ROWS}), one column per stage (default file: OUT/progression.png).")
    seed: int = option(0, "--seed", type=whole, help="Seed of the noise sequence (default 0).")
    start: int = option(0, "--start", type=whole, metavar="K", help="Index of the first image in the sequence (for split jobs; default 0).")
    batch_size: Optional[int] = option(None, "--batch-size", "-b", type=whole, metavar="B",
        help="Images per session call (default: 64 on CPU, 256 on GPU).")
    model: Optional[str] = option(None, "--model", "-m", metavar="MODEL",
        help=f"PATH.onnx, or hf:OWNER/REPO with optional @REVISION and /FILE (default: {LAST_EXPORT}, else the embedded model). "
             "May also be given as the first argument.")
    device: str = option("auto", "--device", "--provider",
        help="auto (default: CUDA when available, else CPU), cpu, cuda, or any ONNX Runtime provider name, as for cgan-train "
             "and cgan-eval. --provider is its former name, still accepted.")
    engine: str = option("auto", "--engine", metavar="ENGINE",
        help="onnxruntime, openvino (CPU only; pip install 'dementia-cgan[openvino]'), or auto (default: openvino when it is installed, "
             "the device is the CPU and --n is at least 512, where it was measured faster; else onnxruntime). The engine is printed.")
    threads: Optional[int] = option(None, "--threads", type=whole, help="CPU threads for the model (default: onnxruntime's, one per core; at most four per core, or 256).")
    writers: Optional[int] = option(None, "--writers", type=whole, help="PNG writer threads (default: one per core, at most 4; at most four per core, or 256, when given).")
    overwrite: bool = option(False, "--overwrite", switch=True, help="Replace files that already exist.")
    noise_version: int = option(NOISE_VERSION, "--noise-version", type=whole, metavar="V",
        help="Noise contract: 2 (default; portable Philox, the browser page draws the same), or 1 (numpy default_rng, to regenerate images of runs made before version 2).")
    balance: Optional[Path] = option(None, "--balance", type=Path, metavar="DATA", record=False,
        help="Balance the dataset folder DATA (OASIS class folders or stage0..stageK, as cgan-train reads): count each stage, print the plan, "
             "then write the generated images that bring every stage to the largest stage's count, in DATA's layout under --out, "
             f"with a manifest {MANIFEST_NAME}. A second run writes only what is missing.")
    ratio: Optional[str] = option(None, "--ratio", metavar="R", record=False,
        help="With --balance: generate floor(R x real) images for each stage instead (in proportion to its real images, so large stages get the most).")
    target: Optional[int] = option(None, "--target", type=whole, metavar="N", record=False,
        help="With --balance: bring every stage to N images (real + generated) instead.")
    quiet: bool = option(False, "--quiet", "-q", switch=True, record=False,
        help="Only the one line naming the model and device (on stderr), and errors.")


@dataclass(frozen=True)
class RunConfig(RunOptions):
    """What one run does once its model is loaded: the options with the model named, the stages resolved and
    the engine chosen (printed at start, saved in the npy sidecars)."""

    stages: tuple[int, ...] = ()

    def record(self) -> dict[str, Any]:
        """The recorded options (see :func:`option`), the model and stages first."""
        values = {"model": self.model, "stages": list(self.stages)}
        for f in dataclasses.fields(RunOptions):
            if f.metadata["cli"]["record"] and f.name not in values:
                value = getattr(self, f.name)
                values[f.name] = str(value) if isinstance(value, Path) else value
        return values

    def line(self) -> str:
        values = self.record()
        values["stages"] = ",".join(map(str, self.stages))
        values["model"] = self.model or "default"
        values["batch_size"] = self.batch_size or "default"
        return "cgan-run " + " ".join(f"{k}={v}" for k, v in values.items() if v is not None)


SUMMARY = ("Generate synthetic brain-MRI slices of chosen dementia stages from an exported dementia-cgan model, "
           "on ONNX Runtime (CPU or GPU; no torch needed).")
HELP = (f"{SUMMARY} Model: MODEL or --model, else {LAST_EXPORT}, else the model shipped with the package; the model "
        "and device are always printed. Existing files are never overwritten without --overwrite.\n\n"
        f"{DISCLAIMER}\n\nEvery option in full, with examples: docs/commands/cgan-run.md (the documentation site).")
# --help groups the options (RunOptions' fields) by what they are for, as every command's help does
PANELS = {
    "What to generate": ["stage", "n", "seed", "start", "noise_version"],
    "Where it goes": ["out", "layout", "format", "grid", "progression", "overwrite"],
    "Model and speed": ["model", "device", "engine", "threads", "batch_size", "writers"],
    "Balancing a dataset": ["balance", "ratio", "target"],
    "Output": ["quiet", "version"],
}


def print_help() -> None:
    """``cgan-run --help`` in the look of every other command (typer's rich panels, see help_style); the command
    line itself is parsed by argparse (:func:`build_parser`), which starts faster."""
    from typer.core import TyperArgument, TyperOption
    from typer.main import get_click_type
    from typer.models import OptionInfo

    from .help_style import command_class

    params = [TyperArgument(param_decls=["model_argument"], required=False, metavar="MODEL",
                            help="The model, as --model (which it replaces when given first).")]
    for f in dataclasses.fields(RunOptions):
        cli = f.metadata["cli"]
        decls = [f.name, *cli["flags"]]
        if cli["switch"]:
            params.append(TyperOption(param_decls=decls, is_flag=True, default=False, help=cli["help"]))
        else:
            kind = int if cli["type"] is whole else Path if cli["type"] in (folder, Path) else str
            params.append(TyperOption(param_decls=decls, type=get_click_type(annotation=kind, parameter_info=OptionInfo()),
                                      default=None, help=cli["help"], show_default=False))
    params.append(TyperOption(param_decls=["version", "--version"], is_flag=True, default=False, help="Print the version and exit."))
    command = command_class(PANELS)(name="cgan-run", params=params, help=HELP, rich_markup_mode="rich")
    command.main(["--help"], prog_name="cgan-run")


class _Help(argparse._HelpAction):
    def __call__(self, parser, namespace, values, option_string=None):
        print_help()
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <what>`` on stderr and exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """Parsed options; MODEL given as an argument is the same as --model."""
        argv = list(sys.argv[1:] if args is None else args)
        parsed, unknown = self.parse_known_args(argv, namespace)
        given = vars(parsed).pop("model_argument", None)
        if unknown:
            # the value of an unknown option is taken for MODEL by argparse: name the two together
            at = argv.index(given) if given in argv else -1
            if at > 0 and argv[at - 1] in unknown:
                unknown.insert(unknown.index(argv[at - 1]) + 1, given)
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        if given is not None:
            if parsed.model is not None and parsed.model != given:
                self.error(f"two models given ({given} and --model {parsed.model}); give one")
            parsed.model = given
        return parsed


class _ParagraphHelp(argparse.HelpFormatter):
    """Wraps the description paragraph by paragraph (argparse's default joins them into one)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return "\n\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent) for p in text.split("\n\n"))


def build_parser() -> argparse.ArgumentParser:
    """The command line, one argument per :class:`RunOptions` field (its name is the destination)."""
    parser = _Parser(prog="cgan-run", description=HELP, formatter_class=_ParagraphHelp, allow_abbrev=False, add_help=False)
    parser.add_argument("-h", "--help", action=_Help, help="Show this message and exit.")
    for f in dataclasses.fields(RunOptions):
        cli = f.metadata["cli"]
        if cli["switch"]:
            parser.add_argument(*cli["flags"], dest=f.name, action="store_true", help=cli["help"])
            continue
        extra = {"metavar": cli["metavar"]} if cli["metavar"] else {}
        if cli["type"] is not None:
            extra["type"] = cli["type"]
        parser.add_argument(*cli["flags"], dest=f.name, default=f.default, help=cli["help"], **extra)
    parser.add_argument("model_argument", nargs="?", default=argparse.SUPPRESS, metavar="MODEL",
                        help="The model, as --model (which it replaces when given first).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _version() -> str:
    from . import __version__

    return __version__
