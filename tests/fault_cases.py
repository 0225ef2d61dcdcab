"""The fault and bad-input campaign as data: one row per case, run by tests/test_faults.py.

Each row is a command line as a new user would type it, the fault met while it runs, and what must
come out: the exit code, one line matching ``message`` (the last line on stderr for a failure; the
output for a success), no traceback or warning, the files that must stay byte-identical and the paths
that must not exist afterwards. The next round of the campaign is new rows here.

Placeholders in ``args`` and paths: ``{tmp}`` (the test's folder), ``{disk}`` (a small tmpfs of
``disk_size``), ``{ro}`` (a read-only file system), ``{gen32}`` / ``{nan}`` / ``{nan3}`` (a small
model; every stage NaN; NaN for stage 3 only), ``{evil}`` (a checkpoint whose pickle calls
os.system), ``{raw_pickle}`` (a plain pickle), ``{data}`` (a tiny stage0..3 image folder),
``{ckpt}`` (a training checkpoint of a 32-px run without EMA), ``{ckpt_run}`` (a copy of that run's
folder), ``{file}`` (a plain file), ``{victim}`` (a file of random bytes outside every folder a command
is given, checked byte-identical afterwards: the target of a planted symlink), ``{gen32_sha256}`` (the
sha256 of ``{gen32}``, for a planted manifest), ``{stages5}`` / ``{zdim_huge}`` (the small model with metadata
declaring 5 stages on its 4-stage graph; metadata z_dim 10^11 on a graph that leaves z's width open:
tests/_planted.py), ``{named}`` (``{gen32}`` with the case's ``stage_names`` in its metadata).

Planted before the run, after the placeholders of ``args`` are made (so they can go inside ``{data}``):
``keep`` files, ``texts`` (files of the given text), ``links`` (symlinks: to ``{victim}``, dangling, or
looping onto themselves) and ``fifos`` (named pipes). ``manifest`` names folders whose ``generated.csv``
must list exactly the generated images (``stage*_seed*_*.png``) in their class folders afterwards.

Faults on the standard streams: ``stdout-closed`` / ``stderr-closed`` (``>&-`` / ``2>&-``: the descriptor
closed when the command starts), ``stdout-gone`` (a pipe whose reader left before the first line, as ``| true``
does) and ``stdout-head`` (a pipe whose reader takes the first line and leaves, as ``| head -1`` does). The
work must be done all the same (``made``) and the exit code say so.

Faults: ``none``; ``second`` (once ``trigger`` matches, the same command again: it must be refused
with ``second``); ``plant`` (once a path in ``trigger`` exists, write the ``plant`` files with random
bytes); ``interrupt`` (Ctrl-C to the process group once ``trigger`` matches); ``kill9`` (kill -9 of
the command once it has ``children`` child processes, then: its children must exit, and ``rerun``
must succeed and leave nothing matching ``absent``; with ``trigger``, the kill comes once it matches).
With ``rerun_message`` (any fault), ``rerun`` runs after the first run's checks and must exit 0 printing it.
``get`` (``cgan-web serve``): once it prints its address, an HTTP GET of the path must answer the status,
then Ctrl-C stops it. ``holds`` / ``lacks``: (file, regex) that the file's text must / must not match afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    id: str
    defect: int  # the campaign's number (0: a case that was clean, kept as a row; 101-107: round four's security items)
    command: str
    args: tuple[str, ...]
    code: int
    message: str  # regex
    fault: str = "none"
    trigger: tuple[str, ...] = ()  # globs under {tmp}; the first match fires the fault
    plant: tuple[str, ...] = ()  # files written at the trigger, checked byte-identical afterwards
    keep: tuple[str, ...] = ()  # files written before the run, checked byte-identical afterwards
    absent: tuple[str, ...] = ()  # globs under {tmp} that must match nothing afterwards
    links: tuple[tuple[str, str], ...] = ()  # (path under {tmp}, target with placeholders): symlinks made before the run
    fifos: tuple[str, ...] = ()  # paths under {tmp}: named pipes made before the run
    texts: tuple[tuple[str, str], ...] = ()  # (path under {tmp}, text with placeholders): files written before the run
    manifest: tuple[str, ...] = ()  # folders under {tmp} whose generated.csv must list exactly their generated images
    rerun_message: str = ""  # with rerun: the next run must exit 0 and print this (regex)
    stage_names: tuple[str, ...] = ()  # the stage names of {named}
    holds: tuple[tuple[str, str], ...] = ()  # (file under {tmp}, regex its text must match afterwards)
    lacks: tuple[tuple[str, str], ...] = ()  # (file under {tmp}, regex its text must not match afterwards)
    get: tuple[str, int] = ()  # (URL path, HTTP status) asked of cgan-web serve while it runs
    forbid: str = ""  # regex that must not appear in the output (besides tracebacks and warnings)
    disk_size: str = "256k"
    children: int = 0  # kill9: child processes to wait for
    rerun: tuple[str, ...] = ()  # kill9: the next run
    second: str = ""  # fault "second": regex of the last line of the refused second run
    json: tuple[tuple[str, str, object], ...] = ()  # (file, key, value) a JSON output must hold afterwards
    timeout: float = 120
    torch: bool = False  # False: the command runs with torch blocked (a runtime command must not need it)
    made: tuple[tuple[str, int], ...] = ()  # (glob under {tmp}, count): the work that must have been done
    env: tuple[tuple[str, str], ...] = ()  # environment variables set for the command (placeholders allowed; "" unsets)
    missing: tuple[str, ...] = ()  # modules that cannot be imported in the command (as in a runtime-only install)
    first: tuple[str, ...] = ()  # arguments of a run of the same command before the faulted one (e.g. to build a cache)
    truncate: tuple[str, ...] = ()  # globs under {tmp}: files cut to half their size after ``first`` (a cut-short cache)

    @property
    def slow(self) -> bool:
        """Cases that train, evaluate, start worker processes or need a trained checkpoint (pytest -m slow)."""
        return (self.command in ("cgan-train", "cgan-eval") or self.fault == "kill9" or "--workers" in self.args
                or any("{ckpt" in a for a in self.args))


SYNTH = ("synth", "--n", "8", "--img-size", "16")
LOCK_REFUSED = r"^error: .*/\.cgan\.lock is %s, not a lock file of ours; nothing was written to it"
HOLIDAY = ".holiday.20190704.photos.tmp"  # a user's folder that looks like a temporary one of a dead pid
BALANCE_DATA = ("--model", "{gen32}", "--balance", "{data}")
REAL_STAY_16 = r"(?m)^\s+all\s+16\s"  # the plan table's last row: the 16 real images of {data}, however many were generated
MANIFEST_HEAD = "file,stage,model_sha256,seed,k,noise_version\n"
IMG_TAG = "<img src=x onerror=alert(1)>"
QUOTED_OUT = 'a"); import os; os.system("id"); ("b.onnx'  # an --out that closes the card's Python string if pasted raw
QUOTED_CARD = 'a"); import os; os.system("id"); ("b.README.md'
SITE = (("site/index.html", "<!doctype html>\n"), ("site/site.json", "{{}}\n"))  # what cgan-web serve checks a site by
STARTED_SYNTH = ("D/.cgan.lock", ".D.*.tmp")  # the run has begun writing (now; before: its temporary sibling)

CASES: tuple[Case, ...] = (
    # 1: data loss: a file saved in --out while synth runs
    Case("synth-keeps-a-file-saved-during-the-run", 1, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 0,
         r"wrote synthetic OASIS-like set", fault="plant", trigger=STARTED_SYNTH, plant=("D/notes.txt",), torch=True),
    Case("synth-never-replaces-a-planned-name-that-appeared", 1, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 1,
         r"^error: .*D/labels\.csv.*pass --overwrite", fault="plant", trigger=STARTED_SYNTH, plant=("D/labels.csv",),
         absent=("D/*/*.png", "D/README.md", "D/.*.tmp"), torch=True),
    Case("two-synths-into-one-out", 1, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 0, r"wrote synthetic OASIS-like set",
         fault="second", trigger=STARTED_SYNTH, second=r"^error: .*D (is in use by cgan-data synth|already exists and is not empty)",
         plant=(), torch=True),
    Case("synth-refuses-a-non-empty-out", 1, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 1,
         r"^error: .*D already exists and is not empty; choose another --out or pass --overwrite",
         keep=("D/mine.txt",), absent=("D/labels.csv",), torch=True),
    Case("synth-overwrite-keeps-other-files", 1, "cgan-data", (*SYNTH, "--out", "{tmp}/D", "--overwrite"), 0,
         r"wrote synthetic OASIS-like set", keep=("D/mine.txt",), torch=True),
    # 3, 4: kill -9 of synth: its workers exit with it, the next run removes its temporary folder
    Case("synth-kill9-leaves-no-workers-and-no-temp", 3, "cgan-data",
         ("synth", "--n", "256", "--img-size", "32", "--workers", "2", "--out", "{tmp}/D"), 0,
         r"wrote synthetic OASIS-like set", fault="kill9", children=2, rerun=(*SYNTH, "--out", "{tmp}/D"),
         absent=("D/.*.tmp", ".D.*.tmp", "D/.cgan.lock"), torch=True),
    # 5: Ctrl-C and a full disk during cgan-run
    Case("run-interrupted", 5, "cgan-run", ("--model", "{gen32}", "--n", "200000", "--out", "{tmp}/g", "-q"), 130,
         r"^interrupted$", fault="interrupt", trigger=("g/stage0_*.png",), absent=("g/.*.tmp",),
         forbid=r"CancelledError|exception calling callback"),
    Case("run-png-full-disk", 5, "cgan-run", ("--model", "{gen32}", "--stage", "0", "--n", "400", "--out", "{disk}/g", "-q"), 1,
         r"^error: cannot write .*no space left", absent=("disk/g/.*.tmp",),
         forbid=r"CancelledError|exception calling callback"),
    # 6, 13, 14: synth onto a full disk, a read-only file system, an absurd image size
    Case("synth-full-disk", 6, "cgan-data",
         ("synth", "--n", "64", "--img-size", "16", "--workers", "2", "--out", "{disk}/D"), 1,
         r"^error: cannot write .*no space left", disk_size="64k", absent=("disk/D",), torch=True),
    Case("synth-read-only", 13, "cgan-data", (*SYNTH, "--out", "{ro}/D"), 1, r"^error: cannot .*Read-only file system",
         torch=True),
    Case("synth-huge-image-size", 14, "cgan-data", ("synth", "--n", "8", "--img-size", "100000", "--out", "{tmp}/D"), 1,
         r"^error: --img-size must be between 16 and \d+ px, got 100000", absent=("D",), torch=True),
    # 0: every other command's interrupt, full disk and read-only target: one line, nothing half-written
    Case("synth-interrupted", 0, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 130, r"^interrupted$", fault="interrupt",
         trigger=("D/.cgan.lock",), absent=("D",), torch=True),
    Case("run-read-only", 0, "cgan-run", ("--model", "{gen32}", "--n", "4", "--out", "{ro}/g"), 1,
         r"^error: cannot .*Read-only file system"),
    Case("web-build-read-only", 0, "cgan-web", ("build", "{gen32}", "--out", "{ro}/site"), 1,
         r"^error: cannot .*Read-only file system"),
    Case("web-build-full-disk", 0, "cgan-web", ("build", "{gen32}", "--out", "{disk}/site"), 1,
         r"^error: cannot write .*no space left", disk_size="64k", absent=("disk/site",)),
    Case("train-read-only", 0, "cgan-train", ("--data", "{data}", "--img-size", "32", "--max-steps", "1", "--out", "{ro}/m"), 1,
         r"^error: cannot .*Read-only file system", torch=True),
    Case("train-full-disk", 0, "cgan-train",
         ("--data", "{data}", "--img-size", "32", "--width", "32", "--disc-width", "8", "--batch-size", "4", "--max-steps", "2",
          "--out", "{disk}/m"), 1, r"^error: .*no space left", disk_size="64k", absent=("disk/m/**/.*.tmp*",), torch=True),
    Case("train-interrupted", 0, "cgan-train",
         ("--data", "{data}", "--img-size", "32", "--width", "32", "--disc-width", "8", "--batch-size", "4", "--epochs", "1000",
          "--out", "{tmp}/m"), 130, r"^interrupted", fault="interrupt", trigger=("m/checkpoints/ckpt_*.pt",),
         absent=("m/**/.*.tmp*",), torch=True),
    Case("scan-read-only-cache", 0, "cgan-data", ("scan", "--data", "{data}", "--img-size", "32", "--cache-dir", "{ro}/c"), 1,
         r"^error: .*Read-only file system", torch=True),
    Case("export-read-only", 0, "cgan-export", ("{ckpt}", "--out", "{ro}/e.onnx"), 1, r"^error: .*Read-only file system",
         torch=True),
    Case("export-full-disk", 0, "cgan-export", ("{ckpt}", "--out", "{disk}/e.onnx"), 1, r"^error: .*no space left",
         disk_size="64k", absent=("disk/e.onnx", "disk/.*.tmp*"), torch=True),
    Case("export-int8-read-only", 0, "cgan-export", ("{gen32}", "--int8", "--out", "{ro}/q.onnx"), 1,
         r"^error: .*Read-only file system"),
    # 7, 12, 19: cgan-eval (fixed in the evaluator; kept here as rows): too few images, a read-only --out, a second run
    Case("eval-too-few-images", 7, "cgan-eval", ("{gen32}", "--data", "{data}", "--cache-dir", "{tmp}/c", "--out", "{tmp}/e"), 1,
         r"^error: too few real images", absent=("e",), torch=True),
    Case("eval-read-only-out", 12, "cgan-eval", ("{gen32}", "--data", "{data}", "--cache-dir", "{tmp}/c", "--out", "{ro}/e"), 1,
         r"^error: --out .* is not writable .*Read-only file system", torch=True, timeout=60),
    Case("eval-second-run-into-one-out", 19, "cgan-eval", ("{gen32}", "--data", "{data}", "--cache-dir", "{tmp}/c", "--out", "{tmp}/e"), 1,
         r"^error: --out .* already holds a report \(report\.json\); pass --overwrite", keep=("e/report.json",), torch=True),
    # 8, 15: cgan-web's help and ports
    Case("web-build-help", 8, "cgan-web", ("build", "--help"), 0, r"Usage: cgan-web build .*\n(.|\n)*--overwrite"),
    Case("web-serve-help", 8, "cgan-web", ("serve", "--help"), 0, r"Usage: cgan-web serve"),
    Case("data-synth-help", 8, "cgan-data", ("synth", "--help"), 0, r"Usage: cgan-data synth"),
    Case("train-help", 8, "cgan-train", ("--help",), 0, r"Usage: cgan-train"),
    Case("export-help", 8, "cgan-export", ("--help",), 0, r"Usage: cgan-export"),
    Case("web-serve-port-too-large", 15, "cgan-web", ("serve", "{tmp}", "--port", "70000"), 1,
         r"^error: --port 70000 is not a port number"),
    Case("web-serve-port-negative", 15, "cgan-web", ("serve", "{tmp}", "--port", "-1"), 1,
         r"^error: --port -1 is not a port number"),
    # 9: an absurd --n is refused at once
    Case("run-absurd-n", 9, "cgan-run", ("--model", "{gen32}", "--n", "10000000000000", "--out", "{tmp}/g"), 1,
         r"^error: not enough space for 40,000,000,000,000 PNG files", absent=("g",), timeout=60),
    # 10, 11: a model that is NaN for one stage is refused before anything is written
    Case("run-nan-for-one-stage", 10, "cgan-run", ("--model", "{nan3}", "--n", "4", "--out", "{tmp}/g"), 1,
         r"^error: the model .*non-finite .* for stage 3\b", absent=("g",)),
    Case("web-build-nan-model", 11, "cgan-web", ("build", "{nan3}", "--out", "{tmp}/site"), 1,
         r"^error: the model .*non-finite .* stage 3", absent=("site",)),
    # 16: int8 of a NaN model names the NaN output
    Case("export-int8-nan-model", 16, "cgan-export", ("{nan3}", "--int8", "--out", "{tmp}/q.onnx"), 1,
         r"^error: .*non-finite .*stage 3", absent=("q.onnx",), forbid=r"scale issue"),
    # 17, 18: training on too little or no data
    Case("train-batch-larger-than-the-data", 17, "cgan-train",
         ("--data", "{data}", "--img-size", "32", "--width", "32", "--disc-width", "8", "--batch-size", "100000000",
          "--max-steps", "1", "--sample-every", "0", "--out", "{tmp}/m"), 0,
         r"training at batch size 16", json=(("m/config.json", "batch_size", 16),), torch=True),
    Case("train-unusable-data-leaves-no-out", 18, "cgan-train", ("--data", "{tmp}/nothing-here", "--out", "{tmp}/m"), 1,
         r"^error: ", absent=("m",), torch=True),
    # 19: wording
    Case("run-grid-under-a-file", 19, "cgan-run", ("--model", "{gen32}", "--n", "1", "--format", "none", "--grid", "{file}/sheet.png"), 1,
         r"^error: .*--grid", forbid=r"another --out"),
    Case("run-empty-out", 19, "cgan-run", ("--model", "{gen32}", "--n", "1", "--out", ""), 2,
         r"^error: argument --out.*empty string", absent=("stage0_*.png",)),
    Case("train-resume-nothing-names-the-folder", 19, "cgan-train", ("--resume", "--out", "{tmp}/m"), 1,
         r"^error: --resume: no checkpoint in ", forbid=r"PosixPath", torch=True),
    Case("train-resume-with-other-data-shows-the-path", 19, "cgan-train",
         ("--resume", "--out", "{ckpt_run}", "--data", "{data}"), 1,
         r"^error: --resume continues .* with data=/.*; drop --data \(got /.*data\)", forbid=r"PosixPath", torch=True),
    Case("export-ema-of-a-run-without-ema", 19, "cgan-export", ("{ckpt}", "--weights", "ema", "--out", "{tmp}/e.onnx"), 1,
         r"^error: .*no EMA", forbid=r"its keys are: .*generator_ema", absent=("e.onnx",), torch=True),
    Case("export-raw-pickle", 19, "cgan-export", ("{raw_pickle}", "--out", "{tmp}/e.onnx"), 1,
         r"^error: .*plain Python pickle", forbid=r"weights_only", absent=("e.onnx",), torch=True),
    # 20: a hostile checkpoint is refused as such, never called corrupt, never pointing at the unsafe option
    Case("export-evil-pickle", 20, "cgan-export", ("{evil}", "--out", "{tmp}/e.onnx"), 1,
         r"^error: checkpoint .*evil\.pth refused: the file needs pickled code to load.*never executed",
         forbid=r"corrupt|weights_only|Weights only", absent=("e.onnx", "PWNED"), torch=True),
    # 101: a symlink (or pipe, or folder) planted at the lock's name is refused, never written through
    Case("run-lock-symlink-to-a-file-elsewhere", 101, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 1,
         LOCK_REFUSED % "a symlink", links=(("g/.cgan.lock", "{victim}"),), absent=("g/stage*",)),
    Case("balance-lock-symlink-to-a-file-elsewhere", 101, "cgan-run",
         ("--model", "{gen32}", "--balance", "{data}", "--target", "5", "--out", "{data}"), 1,
         LOCK_REFUSED % "a symlink", links=(("data/.cgan.lock", "{victim}"),), absent=("data/*/stage*", "data/generated.csv")),
    Case("web-build-lock-symlink-to-a-file-elsewhere", 101, "cgan-web", ("build", "{gen32}", "--out", "{tmp}/site"), 1,
         LOCK_REFUSED % "a symlink", links=(("site/.cgan.lock", "{victim}"),), absent=("site/index.html",)),
    Case("synth-lock-symlink-to-a-file-elsewhere", 101, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 1,
         LOCK_REFUSED % "a symlink", links=(("D/.cgan.lock", "{victim}"),), absent=("D/labels.csv",), torch=True),
    Case("train-lock-symlink-to-a-file-elsewhere", 101, "cgan-train",
         ("--data", "{data}", "--img-size", "32", "--width", "32", "--disc-width", "8", "--batch-size", "4", "--max-steps", "1",
          "--out", "{tmp}/m"), 1, LOCK_REFUSED % "a symlink", links=(("m/.cgan.lock", "{victim}"),), absent=("m/checkpoints",),
         torch=True),
    Case("run-lock-dangling-symlink", 101, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 1,
         LOCK_REFUSED % "a symlink", links=(("g/.cgan.lock", "{tmp}/made-through-the-link"),), absent=("made-through-the-link",)),
    Case("run-lock-looping-symlink", 101, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 1,
         LOCK_REFUSED % "a symlink", links=(("g/.cgan.lock", "{tmp}/g/.cgan.lock"),), absent=("g/stage*",)),
    Case("run-lock-is-a-pipe", 101, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 1,
         LOCK_REFUSED % "not a regular file", fifos=("g/.cgan.lock",), absent=("g/stage*",), timeout=30),
    # 102: the clean-up of killed runs' temporary files removes only names a run made, never a user's look-alike
    Case("run-keeps-a-user-folder-named-like-a-temp", 102, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 0,
         r"wrote 8 PNG", keep=(f"g/{HOLIDAY}/photo.jpg", "g/.notes.20190704.draft.tmp")),
    Case("balance-keeps-a-user-folder-named-like-a-temp-in-a-class-folder", 102, "cgan-run",
         ("--model", "{gen32}", "--balance", "{data}", "--target", "5", "--out", "{data}"), 0, r"wrote 4 PNG",
         keep=(f"data/stage0/{HOLIDAY}/photo.jpg", f"data/{HOLIDAY}/photo.jpg")),
    Case("web-build-keeps-a-user-folder-named-like-a-temp", 102, "cgan-web", ("build", "{gen32}", "--out", "{tmp}/site", "--overwrite"), 0,
         r"wrote .*site", keep=(f"site/{HOLIDAY}/photo.jpg",)),
    Case("synth-refuses-an-out-holding-a-folder-named-like-a-temp", 102, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 1,
         r"^error: .*D already exists and is not empty", keep=(f"D/{HOLIDAY}/photo.jpg",), absent=("D/labels.csv",), torch=True),
    # 103: an interrupted --balance (kill -9, Ctrl-C, a full disk) leaves a manifest listing exactly the generated images
    # there, and the next run continues: the dataset's 16 real images stay 16 (the plan's "all" row)
    Case("balance-kill9-then-rerun-continues", 103, "cgan-run", (*BALANCE_DATA, "--target", "3000", "--out", "{data}", "-q"), 0,
         REAL_STAY_16, fault="kill9", trigger=("data/stage0/stage0_seed0_*.png",), rerun=(*BALANCE_DATA, "--target", "6", "--out", "{data}"),
         manifest=("data",), absent=("data/*/.*.tmp", "data/.*.tmp", "data/.cgan.lock")),
    Case("balance-interrupted-lists-what-it-wrote", 0, "cgan-run", (*BALANCE_DATA, "--target", "3000", "--out", "{data}", "-q"), 130,
         r"^interrupted$", fault="interrupt", trigger=("data/stage0/stage0_seed0_*.png",), manifest=("data",),
         rerun=(*BALANCE_DATA, "--target", "6", "--out", "{data}"), rerun_message=REAL_STAY_16, absent=("data/*/.*.tmp",)),
    Case("balance-full-disk-names-the-image", 103, "cgan-run", (*BALANCE_DATA, "--target", "400", "--out", "{disk}/b", "-q"), 1,
         r"^error: cannot write .*/b/stage\d/stage\d_seed0_\d+\.png: no space left", manifest=("disk/b",),
         rerun=(*BALANCE_DATA, "--target", "5", "--stage", "0", "--out", "{disk}/b"), rerun_message=REAL_STAY_16,
         absent=("disk/b/*/.*.tmp",)),
    # 104: --out inside (or equal to) a class folder of the dataset is refused
    Case("balance-out-inside-a-class-folder", 104, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}/stage0/gen"), 1,
         r"^error: --out .*stage0/gen is inside the dataset's class folder .*stage0 \(stage 0\)", absent=("data/stage0/gen",)),
    Case("balance-out-is-a-class-folder", 104, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}/stage1"), 1,
         r"^error: --out .*stage1 is inside the dataset's class folder", absent=("data/stage1/stage*", "data/stage1/generated.csv")),
    # 105: manifest rows name plain files directly in their stage's class folder; any other row is refused in one line
    Case("balance-manifest-row-outside-the-folder", 105, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}"), 1,
         r"^error: .*generated\.csv, line 2: file '/etc/passwd' is not a relative path", absent=("data/*/stage*",),
         texts=(("data/generated.csv", MANIFEST_HEAD + "/etc/passwd,0,{gen32_sha256},0,0,2\n"),)),
    Case("balance-manifest-row-climbing-out", 105, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}"), 1,
         r"^error: .*generated\.csv, line 2: file '\.\./data/stage2/0\.png' is not a plain relative path", absent=("data/*/stage*",),
         texts=(("data/generated.csv", MANIFEST_HEAD + "../data/stage2/0.png,0,{gen32_sha256},0,0,2\n"),)),
    Case("balance-manifest-row-in-another-stage", 105, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}"), 1,
         r"^error: .*generated\.csv: the row of 'stage2/0\.png' does not name a file directly in stage 0's class folder stage0/",
         absent=("data/*/stage*",), texts=(("data/generated.csv", MANIFEST_HEAD + "stage2/0.png,0,{gen32_sha256},0,0,2\n"),)),
    Case("balance-manifest-row-a-symlink", 105, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}"), 1,
         r"^error: .*generated\.csv: the row of 'stage0/stage0_seed0_0\.png' names a symlink", absent=("data/*/stage*_seed0_*[1-9].png",),
         texts=(("data/generated.csv", MANIFEST_HEAD + "stage0/stage0_seed0_0.png,0,{gen32_sha256},0,0,2\n"),),
         links=(("data/stage0/stage0_seed0_0.png", "{victim}"),)),
    Case("balance-manifest-row-naming-a-real-image", 105, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}"), 1,
         r"^error: .*generated\.csv: the row of 'stage0/0\.png' does not name image 0 of stage 0 and seed 0 as cgan-run --balance names it",
         absent=("data/*/stage*",), texts=(("data/generated.csv", MANIFEST_HEAD + "stage0/0.png,0,{gen32_sha256},0,0,2\n"),)),
    # round four, 201: hangs on absurd numbers (refused at once, naming the bound); 202: tracebacks (broken metadata,
    # caches); 203: exit codes (closed or broken stdout/stderr); 204: misleading messages; 205: a new user's first hour
    Case("balance-ratio-beyond-any-float", 201, "cgan-run", ("--model", "{gen32}", "--balance", "{data}", "--out", "{tmp}/g",
         "--ratio", "1e999999999"), 1, r"^error: --ratio must be between 0 and 10,000, got 1e999999999", absent=("g",), timeout=30),
    Case("balance-ratio-below-any-float", 201, "cgan-run", ("--model", "{gen32}", "--balance", "{data}", "--out", "{tmp}/g",
         "--ratio", "1e-999999999"), 0, r"nothing to do", absent=("g/*/*.png",), timeout=30),
    Case("balance-ratio-huge", 201, "cgan-run", ("--model", "{gen32}", "--balance", "{data}", "--out", "{tmp}/g",
         "--ratio", "100000000"), 1, r"^error: --ratio must be between 0 and 10,000, got 100000000", absent=("g",), timeout=30),
    Case("balance-target-huge", 201, "cgan-run", ("--model", "{gen32}", "--balance", "{data}", "--out", "{tmp}/g",
         "--target", "1000000000000"), 1, r"^error: --target must be at most 1,000,000,000 images per stage", absent=("g",),
         timeout=30),
    Case("balance-target-beyond-the-disk", 201, "cgan-run", ("--model", "{gen32}", "--balance", "{data}", "--out", "{disk}/g",
         "--target", "1000000000"), 1, r"^error: not enough space for 3,999,999,98\d PNG files", absent=("disk/g",), timeout=30),
    Case("run-threads-huge", 201, "cgan-run", ("--model", "{gen32}", "--n", "1", "--out", "{tmp}/g", "--threads", "100000"), 1,
         r"^error: --threads must be between 1 and \d+", absent=("g",), timeout=30),
    Case("run-writers-huge", 201, "cgan-run", ("--model", "{gen32}", "--n", "1", "--out", "{tmp}/g", "--writers", "100000"), 1,
         r"^error: --writers must be between 1 and \d+", absent=("g",), timeout=30),
    Case("run-metadata-more-stages-than-the-graph", 202, "cgan-run", ("--model", "{stages5}", "--n", "1", "--out", "{tmp}/g"), 1,
         r"^error: the model .*stages5\.onnx cannot run stage 4 .*declares 5 stages", absent=("g",)),
    Case("web-build-metadata-more-stages-than-the-graph", 202, "cgan-web", ("build", "{stages5}", "--out", "{tmp}/site"), 1,
         r"^error: the model .*stages5\.onnx cannot run stage 4 .*declares 5 stages", absent=("site",)),
    Case("export-int8-metadata-more-stages-than-the-graph", 202, "cgan-export", ("{stages5}", "--int8", "--out", "{tmp}/q.onnx"), 1,
         r"^error: the model .*stages5\.onnx cannot run stage 4 .*declares 5 stages", absent=("q.onnx",)),
    Case("run-metadata-absurd-z-dim", 202, "cgan-run", ("--model", "{zdim_huge}", "--n", "1", "--out", "{tmp}/g"), 1,
         r"^error: .*zdim_huge\.onnx: metadata cgan\.z_dim=100000000000 must be between 1 and 65536", absent=("g",), timeout=60),
    Case("web-build-metadata-absurd-z-dim", 202, "cgan-web", ("build", "{zdim_huge}", "--out", "{tmp}/site"), 1,
         r"^error: .*metadata cgan\.z_dim=100000000000 must be between", absent=("site",), timeout=60),
    # 203: a closed or abandoned stdout/stderr: the work is done, no traceback, and the exit code says so
    Case("run-stdout-closed", 203, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 0, r"^model: ",
         fault="stdout-closed", made=(("g/stage*_seed0_*.png", 8),)),
    Case("run-stderr-closed", 203, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 0, r"^wrote 8 PNG images",
         fault="stderr-closed", made=(("g/stage*_seed0_*.png", 8),)),
    Case("run-stdout-gone", 0, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 0, r"^model: ",
         fault="stdout-gone", made=(("g/stage*_seed0_*.png", 8),)),
    Case("run-stdout-head", 0, "cgan-run", ("--model", "{gen32}", "--n", "2", "--out", "{tmp}/g"), 0, r"^cgan-run model=",
         fault="stdout-head", made=(("g/stage*_seed0_*.png", 8),)),
    Case("balance-stdout-gone", 0, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{tmp}/b"), 0, r"^model: ",
         fault="stdout-gone", made=(("b/stage*/stage*_seed0_*.png", 4),), manifest=("b",)),
    Case("web-build-stdout-gone", 203, "cgan-web", ("build", "{gen32}", "--out", "{tmp}/site"), 0, r"",
         fault="stdout-gone", made=(("site/index.html", 1), ("site/site.json", 1))),
    Case("web-build-stdout-closed", 0, "cgan-web", ("build", "{gen32}", "--out", "{tmp}/site"), 0, r"",
         fault="stdout-closed", made=(("site/index.html", 1), ("site/site.json", 1))),
    Case("web-build-stderr-closed", 0, "cgan-web", ("build", "{gen32}", "--out", "{tmp}/site"), 0, r"^wrote .*site",
         fault="stderr-closed", made=(("site/index.html", 1), ("site/site.json", 1))),
    Case("synth-stdout-gone", 203, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 0, r"", fault="stdout-gone",
         made=(("D/labels.csv", 1), ("D/*/*.png", 8)), torch=True),
    Case("synth-stderr-closed", 0, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 0, r"wrote synthetic OASIS-like set",
         fault="stderr-closed", made=(("D/labels.csv", 1), ("D/*/*.png", 8)), torch=True),
    Case("train-stdout-gone", 203, "cgan-train",
         ("--data", "{data}", "--img-size", "32", "--width", "32", "--disc-width", "8", "--batch-size", "4", "--max-steps", "1",
          "--sample-every", "0", "--out", "{tmp}/m"), 0, r"", fault="stdout-gone",
         made=(("m/cDCGAN_generator.pth", 1), ("m/checkpoints/ckpt_*.pt", 1)), torch=True),
    Case("export-stdout-gone", 203, "cgan-export", ("{ckpt}", "--out", "{tmp}/e.onnx"), 0, r"", fault="stdout-gone",
         made=(("e.onnx", 1),), torch=True, timeout=300),
    Case("export-int8-stdout-gone", 203, "cgan-export", ("{gen32}", "--int8", "--out", "{tmp}/q.onnx"), 0, r"",
         fault="stdout-gone", made=(("q.onnx", 1),)),
    # 202: a read-only HOME under the default cache, and a cut-short cache: one line, or the cache built again
    Case("scan-read-only-home", 202, "cgan-data", ("scan", "--data", "{data}", "--img-size", "32"), 1,
         r"^error: cannot write the image cache .*Read-only file system\); set --cache-dir or \$CGAN_CACHE",
         env=(("HOME", "{ro}"), ("CGAN_CACHE", ""), ("XDG_CACHE_HOME", "")), torch=True),
    Case("train-read-only-home", 202, "cgan-train", ("--data", "{data}", "--img-size", "32", "--max-steps", "1", "--out", "{tmp}/m"), 1,
         r"^error: cannot write the image cache .*Read-only file system\); set --cache-dir or \$CGAN_CACHE",
         env=(("HOME", "{ro}"), ("CGAN_CACHE", ""), ("XDG_CACHE_HOME", "")), absent=("m/checkpoints",), torch=True),
    Case("eval-read-only-home", 202, "cgan-eval", ("{gen32}", "--data", "{data}", "--out", "{tmp}/e"), 1,
         r"^error: cannot write the cache .*Read-only file system\); set --cache-dir or \$CGAN_CACHE",
         env=(("HOME", "{ro}"), ("CGAN_CACHE", ""), ("XDG_CACHE_HOME", "")), absent=("e",), torch=True, timeout=60),
    Case("scan-truncated-image-cache", 202, "cgan-data", ("scan", "--data", "{data}", "--img-size", "32", "--cache-dir", "{tmp}/c"), 0,
         r"(?s)cached images .*images-.*\.npy are unreadable .*building them again.*cache \(built\)",
         first=("scan", "--data", "{data}", "--img-size", "32", "--cache-dir", "{tmp}/c"),
         truncate=("c/datasets/*/images-*.npy",), torch=True),
    Case("train-init-from-a-checkpoint-without-its-settings", 202, "cgan-train",
         ("--init-from", "{ckpt_noconfig}", "--data", "{data}", "--img-size", "32", "--width", "32", "--disc-width", "8",
          "--max-steps", "1", "--out", "{tmp}/m"), 1,
         r"^error: --init-from .*ckpt_noconfig\.pt: the checkpoint has no train_config", absent=("m",), torch=True),
    Case("train-init-from-a-checkpoint-with-malformed-settings", 202, "cgan-train",
         ("--init-from", "{ckpt_badconfig}", "--data", "{data}", "--img-size", "32", "--width", "32", "--disc-width", "8",
          "--max-steps", "1", "--out", "{tmp}/m"), 1,
         r"^error: --init-from .*ckpt_badconfig\.pt: the checkpoint has a malformed train_config \(img_size='big'\)",
         absent=("m",), torch=True),
    Case("train-resume-a-checkpoint-without-its-settings", 202, "cgan-train", ("--resume", "--out", "{ckpt_run_noconfig}"), 1,
         r"^error: --resume .*ckpt_\d+\.pt: the checkpoint has no train_config", torch=True),
    # 203: exit codes: a training run that cannot learn is refused up front
    Case("train-lr-g-inf", 203, "cgan-train", ("--lr-g", "inf", "--data", "{data}", "--img-size", "32", "--out", "{tmp}/m"), 1,
         r"^error: --lr-g must be a finite number > 0, got inf", absent=("m",), torch=True),
    Case("train-lr-g-nan", 203, "cgan-train", ("--lr-g", "nan", "--data", "{data}", "--img-size", "32", "--out", "{tmp}/m"), 1,
         r"^error: --lr-g must be a finite number > 0, got nan", absent=("m",), torch=True),
    Case("train-lr-d-negative", 203, "cgan-train", ("--lr-d", "-1e-4", "--data", "{data}", "--img-size", "32", "--out", "{tmp}/m"), 1,
         r"^error: --lr-d must be a finite number > 0, got -0\.0001", absent=("m",), torch=True),
    Case("train-lr-g-zero", 203, "cgan-train", ("--lr-g", "0", "--data", "{data}", "--img-size", "32", "--out", "{tmp}/m"), 1,
         r"^error: --lr-g must be a finite number > 0, got 0", absent=("m",), torch=True),
    Case("train-threads-huge", 201, "cgan-train", ("--threads", "100000", "--data", "{data}", "--img-size", "32", "--out", "{tmp}/m"), 1,
         r"^error: --threads must be between 1 and \d+", absent=("m",), torch=True, timeout=60),
    Case("eval-out-on-a-full-disk", 204, "cgan-eval", ("{gen32}", "--data", "{data}", "--cache-dir", "{tmp}/c", "--out", "{disk}/e"), 1,
         r"^error: --out .*/e is not writable .*No space left on device", absent=("disk/e", "disk/.cgan-eval-probe.*"), torch=True,
         timeout=60),
    # 205: a new user's first hour: the runtime-only install (no torch, no scipy) names the extra to install
    Case("synth-in-a-runtime-only-install", 205, "cgan-data", (*SYNTH, "--out", "{tmp}/D"), 1,
         r"^error: cgan-data synth needs scipy, which is not installed; install it with: pip install 'dementia-cgan\[train\]'",
         missing=("scipy",), absent=("D",)),
    Case("balance-second-run-into-a-folder-in-use", 204, "cgan-run", (*BALANCE_DATA, "--target", "2000", "--out", "{tmp}/b", "-q"), 0,
         r"", fault="second", trigger=("b/stage0/stage0_seed0_*.png",),
         second=r"^error: .*/b is in use by cgan-run --balance \(pid \d+\); wait for it to finish", manifest=("b",)),
    Case("run-hub-model-climbing-out", 204, "cgan-run", ("--model", "hf:someone/repo/../x.onnx", "--n", "1", "--out", "{tmp}/g"), 1,
         r"^error: cannot read Hub model 'hf:someone/repo/\.\./x\.onnx': a file or repository name has a '\.' or '\.\.' part",
         env=(("HF_HUB_OFFLINE", "1"),), absent=("g",)),
    Case("run-model-is-a-pipe", 204, "cgan-run", ("--model", "{tmp}/m.onnx", "--n", "1", "--out", "{tmp}/g"), 1,
         r"^error: --model .*m\.onnx is not a regular file \(a named pipe", fifos=("m.onnx",), absent=("g",), timeout=30),
    Case("run-out-dangling-symlink", 204, "cgan-run", ("--model", "{gen32}", "--n", "1", "--out", "{tmp}/g"), 1,
         r"^error: cannot create .*/g \(.*/g is a symlink to .*/nowhere, which does not exist\)",
         links=(("g", "{tmp}/nowhere"),), absent=("nowhere",)),
    Case("run-out-looping-symlink", 204, "cgan-run", ("--model", "{gen32}", "--n", "1", "--out", "{tmp}/g"), 1,
         r"^error: cannot create .*/g \(.*/g is a symlink that loops", links=(("g", "{tmp}/g"),)),
    Case("run-model-path-not-utf8", 204, "cgan-run", ("--model", "{tmp}/N\udcff.onnx", "--n", "1", "--out", "{tmp}/g"), 1,
         r"^error: --model .*: the path is not valid UTF-8, which ONNX Runtime cannot open; rename the file",
         texts=(("N\udcff.onnx", "not read\n"),), forbid=r"incompatible constructor|pybind", absent=("g",)),
    Case("balance-two-folders-for-one-stage", 204, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{tmp}/b"), 1,
         r"^error: .*data has two folders for stage 1: 'Stage 1' and 'stage1'; merge them", texts=(("data/Stage 1/0.png", "x\n"),),
         absent=("b",)),
    Case("balance-counts-no-text-file-or-dangling-link-as-real", 204, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{tmp}/b"), 0,
         r"(?m)^\s+3 stage3\s+4\s+1\s", texts=(("data/stage3/notes.png", "not an image\n"),),
         links=(("data/stage3/moved.png", "{tmp}/nowhere.png"),), made=(("b/stage3/stage3_seed0_*.png", 1),)),
    Case("balance-manifest-with-a-byte-order-mark", 204, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}"), 0,
         r"wrote 4 PNG", texts=(("data/generated.csv", "\ufeff" + MANIFEST_HEAD),), manifest=("data",)),
    Case("balance-manifest-with-a-huge-field", 202, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}"), 1,
         r"^error: .*generated\.csv holds a line that is not a manifest row \(field larger than field limit",
         texts=(("data/generated.csv", MANIFEST_HEAD + "a" * 140_000 + ",0,{gen32_sha256},0,0,2\n"),), absent=("data/*/stage*",)),
    Case("balance-manifest-with-a-nul", 0, "cgan-run", (*BALANCE_DATA, "--target", "5", "--out", "{data}"), 1,
         r"^error: .*generated\.csv, line 2: file .* holds control characters",
         texts=(("data/generated.csv", MANIFEST_HEAD + "stage0/a\0.png,0,{gen32_sha256},0,0,2\n"),), absent=("data/*/stage*",)),
    Case("eval-bad-group-regex-without-data", 204, "cgan-eval", ("{gen32}", "--group-regex", "(", "--cache-dir", "{tmp}/c", "--out", "{tmp}/e"), 1,
         r"^error: --group-regex '\(' is not a valid regular expression", absent=("e", "c"), torch=True, timeout=60),
    Case("eval-group-regex-without-data", 204, "cgan-eval", ("{gen32}", "--group-regex", "(OAS1_\\d+)", "--cache-dir", "{tmp}/c",
         "--out", "{tmp}/e"), 1, r"^error: --group-regex names the subjects of --data's files; without --data", absent=("e", "c"),
         torch=True, timeout=60),
    Case("run-empty-engine", 204, "cgan-run", ("--model", "{gen32}", "--n", "1", "--out", "{tmp}/g", "--engine", ""), 1,
         r"^error: unknown engine ''; expected one of auto, onnxruntime, openvino", absent=("g",)),
    # 106: nothing read from a model or a path goes raw into the model card (published as the Hub README) or the site's README
    Case("export-card-html-in-a-stage-name", 106, "cgan-export", ("{named}", "--int8", "--out", "{tmp}/q.onnx"), 0, r"model card: ",
         stage_names=("Non-demented", IMG_TAG, "Mild", "Moderate"), lacks=(("q.README.md", r"<img"),),
         holds=(("q.README.md", r"\| 1 \| &#60;img src=x onerror=alert\(1\)&#62; \|"),)),
    Case("export-card-code-in-the-out-name", 106, "cgan-export", ("{gen32}", "--int8", "--out", "{tmp}/" + QUOTED_OUT), 0, r"model card: ",
         holds=((QUOTED_CARD, r"InferenceSession\('a\"\); import os; os\.system\(\"id\"\); \(\"b\.onnx', "),
                (QUOTED_CARD, r"cgan-run --model 'a\"\); import os; os\.system\(\"id\"\); \(\"b\.onnx' ")),
         lacks=((QUOTED_CARD, r"\(\"a\"\); import os"),)),
    Case("export-refuses-a-stage-name-with-a-newline", 106, "cgan-export", ("{named}", "--int8", "--out", "{tmp}/q.onnx"), 1,
         r"^error: .*named\.onnx: metadata cgan\.stage_names: stage 2's name .* holds a control character \(U\+000A\)",
         stage_names=("Non-demented", "Very mild", "Mild\nimport os; os.system('echo INJECTED')", "Moderate"), absent=("q.onnx", "q.README.md")),
    Case("web-build-readme-html-in-the-model-name", 106, "cgan-web", ("build", "{tmp}/" + IMG_TAG + ".onnx", "--out", "{tmp}/site"), 0,
         r"wrote .*site", links=((IMG_TAG + ".onnx", "{gen32}"),), lacks=(("site/README.md", r"<img"),),
         holds=(("site/README.md", r"&#60;img src=x onerror=alert\(1\)&#62;\.onnx"),)),
    # 107: cgan-web serve stays inside the site; NUL and absurdly long stage names are refused where metadata is read
    Case("web-serve-refuses-a-symlink-out-of-the-site", 107, "cgan-web", ("serve", "{tmp}/site", "--port", "0"), 0, r"stopped",
         texts=SITE, links=(("site/leak", "{tmp}/victim"),), get=("/leak/precious.txt", 404), keep=("victim/precious.txt",)),
    Case("web-serve-serves-the-site", 0, "cgan-web", ("serve", "{tmp}/site", "--port", "0"), 0, r"stopped", texts=SITE,
         get=("/index.html", 200)),
    Case("run-refuses-a-nul-in-a-stage-name", 107, "cgan-run", ("--model", "{named}", "--n", "1", "--out", "{tmp}/g"), 1,
         r"^error: .*named\.onnx: metadata cgan\.stage_names: stage 1's name 'Very\\x00mild' holds a control character \(U\+0000\)",
         stage_names=("Non-demented", "Very\0mild", "Mild", "Moderate"), absent=("g",)),
    Case("web-build-refuses-a-nul-in-a-stage-name", 107, "cgan-web", ("build", "{named}", "--out", "{tmp}/site"), 1,
         r"^error: .*stage 1's name 'Very\\x00mild' holds a control character", stage_names=("Non-demented", "Very\0mild", "Mild", "Moderate"),
         absent=("site",)),
    Case("run-grid-refuses-a-huge-stage-name", 107, "cgan-run", ("--model", "{named}", "--n", "1", "--format", "none", "--grid", "{tmp}/sheet.png"),
         1, r"^error: .*stage 3's name 'x{40}\.\.\.' is 200,000 characters long; stage names may have at most 64",
         stage_names=("Non-demented", "Very mild", "Mild", "x" * 200_000), absent=("sheet.png",)),
)
