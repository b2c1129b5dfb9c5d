"""House rules that a reader can check: no import cycles, small modules, self-contained
citations.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "cpc_tf"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """cpc_tf modules imported when module `name` (file `path`) is imported: module level only,
    TYPE_CHECKING blocks excluded (an import inside a function runs later, so it cannot cycle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)

    visit(tree.body)
    return {m for m in found if m in modules and m != name}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> modules it imports), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_no_import_cycles() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    graph = {_module_name(f): _top_level_imports(f, _module_name(f), modules) for f in files}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_sees_imports_and_cycles(tmp_path: Path) -> None:
    modules = {"cpc_tf.a", "cpc_tf.b", "cpc_tf.c"}
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text("import cpc_tf.b\n")
    b.write_text("try:\n    from cpc_tf import c\nexcept ImportError:\n    pass\n")
    c.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import cpc_tf.a\n"
        "def f():\n    import cpc_tf.a\n"
    )
    graph = {n: _top_level_imports(f, n, modules) for n, f in zip(sorted(modules), (a, b, c))}
    assert graph == {"cpc_tf.a": {"cpc_tf.b"}, "cpc_tf.b": {"cpc_tf.c"}, "cpc_tf.c": set()}
    assert _find_cycle(graph) is None
    graph["cpc_tf.c"].add("cpc_tf.a")
    assert _find_cycle(graph) == ["cpc_tf.a", "cpc_tf.b", "cpc_tf.c", "cpc_tf.a"]


def test_modules_stay_small() -> None:
    # about 400 lines per module (house rule); the argparse table and the registry's declarations
    # are long by nature, so the ceiling has a margin rather than exceptions by name.
    sizes = {
        str(f.relative_to(REPO_ROOT)): len(f.read_text(encoding="utf-8").splitlines())
        for f in PACKAGE.rglob("*.py")
    }
    too_big = {f: n for f, n in sizes.items() if n > 500}
    assert not too_big, too_big


def test_citations_are_self_contained() -> None:
    # users have the papers, not the project's internal notes: cite author, year and section
    banned = ("seed 00", "SPEC §", "SPEC.md", "ARCHITECTURE.md")
    hits = [
        f"{f.relative_to(REPO_ROOT)}:{i}: {line.strip()}"
        for f in sorted(PACKAGE.rglob("*"))
        if f.suffix in (".py", ".yaml")
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if any(b in line for b in banned)
    ]
    assert not hits, "\n".join(hits[:20])
