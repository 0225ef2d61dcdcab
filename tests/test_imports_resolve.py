"""Every `from cgan... import name` in the package names something that exists, including the imports
inside functions that only run on one path (a renamed helper otherwise breaks that path at run time)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"runtime": "cgan.runtime", "train": "cgan.train", "export": "cgan.export"}


def _module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports():
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = _module_name(path)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom):
                    continue
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.startswith("cgan."):
                    target = node.module
                else:
                    continue
                for alias in node.names:
                    if alias.name != "*":
                        yield f"{path.relative_to(ROOT)}:{node.lineno}", target, alias.name


def test_every_imported_name_exists():
    pytest.importorskip("torch")
    missing = []
    for where, target, name in _imports():
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            if exc.name and not exc.name.startswith("cgan"):
                continue  # an optional extra that is not installed here, e.g. openvino
            missing.append(f"{where}: {target} ({exc})")
            continue
        if not hasattr(module, name):
            try:
                importlib.import_module(f"{target}.{name}")  # a submodule
            except ImportError:
                missing.append(f"{where}: {target} has no {name}")
    assert not missing, missing
