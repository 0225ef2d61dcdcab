"""Shared test helpers: run an installed console script in a fresh interpreter, optionally without torch."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Makes `import torch` (and any submodule) raise ImportError in the child, although torch is installed.
_BLOCK_TORCH = (
    "import sys, importlib.abc\n"
    "class _NoTorch(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError(f'torch is blocked in this test ({name})')\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def console_script(name: str) -> str:
    """``module:function`` of an installed console script."""
    (ep,) = [ep for ep in entry_points(group="console_scripts") if ep.name == name]
    return ep.value


def run_script(
    name: str,
    *args: str,
    block_torch: bool = False,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run console script ``name`` with ``args`` in a child interpreter; with ``block_torch`` torch cannot be imported.

    The child also reports whether torch ended up in ``sys.modules`` (``CGAN_TEST_TORCH_LOADED=...`` on stderr).
    """
    module, func = console_script(name).split(":")
    code = (_BLOCK_TORCH if block_torch else "import sys\n") + (
        "import atexit\n"
        "atexit.register(lambda: print('CGAN_TEST_TORCH_LOADED=' + str('torch' in sys.modules), file=sys.stderr))\n"
        f"sys.argv = [{name!r}] + {list(args)!r}\n"
        f"from {module} import {func} as _main\n"
        "_main()\n"
    )
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env["COLUMNS"] = "120"
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def torch_loaded(result: subprocess.CompletedProcess) -> bool:
    marker = [line for line in result.stderr.splitlines() if line.startswith("CGAN_TEST_TORCH_LOADED=")]
    assert marker, f"child did not report its modules:\n{result.stderr}"
    return marker[-1].endswith("True")


@pytest.fixture
def script():
    """The :func:`run_script` helper as a fixture."""
    return run_script


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The child's stderr lines without the helper's own marker line."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("CGAN_TEST_TORCH_LOADED=")]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted in ``tmp_path`` (a full disk on demand); skipped where mounting is not permitted."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({(done.stderr or done.stdout).strip()[:120]}); needs root or CAP_SYS_ADMIN")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
