"""A torch variant in its own process, driven line by line over stdin/stdout (JSON), for compiled modes.

    python -m bench._worker --mode "compile fp32 (freezing)" --checkpoint G.pth

Requests (one JSON object a line): ``{"cmd": "prepare", "batch": B}`` builds/compiles the runner for
batch B and runs it twice (compile time is reported, never timed by the benchmark);
``{"cmd": "run", "batch": B}`` generates one batch; ``{"cmd": "time", "batch": B, "rounds": R}``
times R calls here and returns the seconds of each; ``{"cmd": "quit"}``. Each answer is one line
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The parent times ``run`` round trips with
pytest-benchmark (a pipe round trip costs tens of microseconds) and records the worker's own timings too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from bench._helpers import Interleaved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True)
    parser.add_argument("--checkpoint", required=True)
    args = parser.parse_args()

    # Keep the protocol channel clean: anything torch or inductor prints goes to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def reply(**obj) -> None:
        channel.write(json.dumps(obj) + "\n")
        channel.flush()

    import torch

    from bench._torch_modes import make_runner
    from cgan.train.models import Generator

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    gen = Generator(z_dim=ckpt["z_dim"], num_classes=ckpt["num_classes"], img_size=ckpt["img_size"])
    gen.load_state_dict(ckpt["model"], strict=True)
    gen.eval()
    runners = {}
    reply(ok=True, ready=True, torch=torch.__version__, threads=torch.get_num_threads())
    for line in sys.stdin:
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "quit":
                reply(ok=True)
                break
            batch = int(req["batch"])
            if cmd == "prepare":
                start = time.perf_counter()
                if batch not in runners:
                    runners[batch] = make_runner(gen, args.mode, batch)
                runners[batch]()
                first = time.perf_counter() - start
                runners[batch]()
                reply(ok=True, first_call_s=first)
            elif cmd == "run":
                runners[batch]()
                reply(ok=True)
            elif cmd == "time":
                timing = Interleaved({"run": runners[batch]})
                timing.run(int(req.get("rounds", 5)))
                reply(ok=True, times=timing.times["run"])
            else:
                reply(ok=False, error=f"unknown command {cmd!r}")
        except Exception as exc:  # report to the parent instead of dying silently
            reply(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-3000:])


if __name__ == "__main__":
    main()
