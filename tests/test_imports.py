"""Dependencies inside molks point one way: no import cycle, and inference does not load training."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "molks"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph() -> dict[str, set[str]]:
    """molks module -> the molks modules it imports, anywhere in it (inside functions too, which
    run later but are dependencies all the same); imports under ``if TYPE_CHECKING:`` never run
    and are left out. ``from molks.a import b`` counts as an import of ``molks.a.b`` where that is
    a module, else of ``molks.a``."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        nodes = list(ast.iter_child_nodes(ast.parse(path.read_text(encoding="utf-8"))))
        while nodes:
            node = nodes.pop()
            if isinstance(node, ast.If) and _type_checking_only(node):
                nodes.extend(node.orelse)
                continue
            if isinstance(node, ast.Import):
                targets.update(known(alias.name) for alias in node.names if alias.name.startswith("molks"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                if base.startswith("molks"):
                    targets.update(known(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules else known(base)
                                   for alias in node.names)  # fmt: skip
            nodes.extend(ast.iter_child_nodes(node))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None when it is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_molks_has_no_import_cycle() -> None:
    graph = import_graph()
    assert {"molks.api", "molks.evaluation", "molks.metrics", "molks.training.trainer"} <= graph.keys()
    assert "molks.chemistry" in graph["molks.metrics"] and "molks.devices" in graph["molks.api"]  # the graph sees imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_loading_a_model_for_inference_does_not_import_the_trainer() -> None:
    # (torch.distributed itself is imported by ``import torch`` in torch 2.x: not ours to avoid.)
    code = (
        "import sys, molks\n"
        "m = molks.load('moses')\n"
        "m.decode(m.sample_latent(2, seed=0))\n"
        "print(sorted(k for k in sys.modules if k.startswith('molks.training.') and k != 'molks.training.checkpoint'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
