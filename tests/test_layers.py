"""The layers run one way: runtime <- train <- export (<- bench). Every ``import`` in every module of the
three packages, at any depth (inside functions too), is read from the source and checked."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

# the package a folder is installed as, and the packages of ours it may import (besides itself)
LAYERS = {
    "runtime": ("cgan.runtime", ()),
    "train": ("cgan.train", ("cgan.runtime",)),
    "export": ("cgan.export", ("cgan.runtime", "cgan.train")),
}
OURS = tuple(pkg for pkg, _ in LAYERS.values())


def _module_name(folder: str, path: Path) -> str:
    parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([LAYERS[folder][0], *parts])


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; relative imports resolved against ``module``."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` may name a sub-module: count each name as one
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            found += [(node.lineno, name) for name in names]
    return found


def upward_imports(folder: str) -> list[str]:
    own, allowed = LAYERS[folder]
    wrong = []
    for path in sorted((REPO / folder).rglob("*.py")):
        module = _module_name(folder, path)
        for line, name in imported_modules(path, module):
            ours = next((p for p in OURS if name == p or name.startswith(p + ".")), None)
            if ours is not None and ours != own and ours not in allowed:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return wrong


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_no_import_runs_up_the_layers(folder):
    assert upward_imports(folder) == []


def test_the_walk_sees_imports_at_every_depth(tmp_path, monkeypatch):
    """A function-local, relative and absolute upward import are each found (else the test above proves nothing)."""
    fake = tmp_path / "runtime"
    (fake / "sub").mkdir(parents=True)
    (fake / "sub" / "__init__.py").write_text("")
    (fake / "sub" / "mod.py").write_text(
        "import numpy\n"
        "from cgan.runtime.errors import CganError\n"
        "def f():\n"
        "    from cgan.train.models import Generator\n"
        "    import cgan.export.api\n"
        "from ... import export\n"
    )
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    wrong = upward_imports("runtime")
    assert sorted(w.split(" imports ")[1] for w in wrong) == ["cgan.export", "cgan.export.api", "cgan.train.models"], wrong


def test_relative_imports_resolve_within_their_package():
    path = REPO / "runtime" / "web" / "site.py"
    names = {name for _, name in imported_modules(path, "cgan.runtime.web.site")}
    assert "cgan.runtime.contract" in names and "cgan.runtime.web" not in names


# ---------------------------------------------------------------- no import circle

def _modules() -> dict[str, Path]:
    """Every module of the three packages by its installed name."""
    return {_module_name(folder, path): path for folder in LAYERS for path in sorted((REPO / folder).rglob("*.py"))}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of ours it imports, at any depth. ``from pkg import name`` counts as an import
    of ``pkg.name`` where that is a module, else of ``pkg`` (a package's ``__init__``)."""
    graph = {}
    for module, path in modules.items():
        targets = set()
        for _, name in imported_modules(path, module):
            while name and name not in modules:  # `from pkg import func` was read as pkg.func
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: each strongly connected part of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_anywhere():
    assert circles(import_graph(_modules())) == []


def test_a_circle_is_found_even_through_a_function_local_import(tmp_path, monkeypatch):
    """models.py <-> cbn.py once imported each other (one side inside a function): the check must see that."""
    pkg = tmp_path / "train"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text("def build():\n    from .cbn import CBNGenerator\n    return CBNGenerator\n")
    (pkg / "cbn.py").write_text("from .models import build\nfrom .config import SIZE\nCBNGenerator = object\n")
    (pkg / "config.py").write_text("SIZE = 1\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    modules = {_module_name("train", p): p for p in sorted(pkg.rglob("*.py"))}
    assert circles(import_graph(modules)) == [["cgan.train.cbn", "cgan.train.models"]]


# ---------------------------------------------------------------- composition, not mixins

def class_bases(path: Path, name: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == name]
    assert len(found) == 1, f"{path} defines {name} {len(found)} times"
    return [ast.unparse(base) for base in found[0].bases]


def test_training_run_holds_its_checkpoint_and_reports_rather_than_inheriting_them():
    """TrainingRun derives from nothing: its checkpoint state and reports are objects it holds and calls."""
    run_py = REPO / "train" / "loop" / "step.py"
    assert class_bases(run_py, "TrainingRun") == []
    source = run_py.read_text()
    assert "self.checkpoint = RunCheckpoint(" in source and "self.reports = RunReports(" in source


def test_the_bases_check_reads_a_mixin(tmp_path):
    old = tmp_path / "loop.py"
    old.write_text("class RunOutputs:\n    pass\nclass TrainingRun(RunOutputs, state.RunState):\n    pass\n")
    assert class_bases(old, "TrainingRun") == ["RunOutputs", "state.RunState"]
