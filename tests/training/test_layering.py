"""The package's import graph: no circle, and imports point down the layers of DESIGN.md
(app -> plugins, methods -> training -> scene -> rendering; models only use rendering / scene).

Every ``import`` statement counts, at module level or inside a function: a lazy import that hides
a circle is still a circle. Only ``if TYPE_CHECKING:`` imports (never executed) are left out."""

from __future__ import annotations

import ast
from pathlib import Path

import splatlab

PKG = Path(splatlab.__file__).parent

# layer -> the top-level subpackages it must never import
FORBIDDEN = {
    "rendering": {"scene", "training", "methods", "models", "plugins", "app"},
    "scene": {"training", "methods", "models", "plugins", "app"},
    "training": {"methods", "models", "plugins", "app"},
    "models": {"training", "methods", "plugins", "app"},
    "methods": {"plugins", "app"},
    "plugins": {"app", "methods"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """splatlab modules imported by the file (absolute names; ``from x import y`` counts as x.y
    when x.y is a module, else x)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out: set[str] = set()
    typing_only = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks do not run
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("splatlab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("splatlab"):
                continue
            for a in node.names:
                out.add(f"{mod}.{a.name}")
            out.add(mod)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = set()
        for imp in _imports(path, name):
            while imp and imp not in files:
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                deps.add(imp)
        graph[name] = deps
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_circle_between_modules() -> None:
    graph = _graph()
    # package __init__ files that only re-export are edges "package -> its own modules": ignore
    # an edge from a package to a module inside it (importing a package runs its __init__ first,
    # so the reverse edge is what would make a real circle, and that one is kept).
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not d.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers() -> None:
    bad = []
    for name, deps in _graph().items():
        layer = _layer(name)
        for d in deps:
            if _layer(d) in FORBIDDEN.get(layer, set()):
                bad.append(f"{name} imports {d}")
    assert not bad, "\n".join(sorted(bad))


def test_the_graph_sees_the_package() -> None:
    """The walk must find the modules it is about (a broken walk would pass the tests above)."""
    graph = _graph()
    assert "splatlab.training.trainer" in graph and "splatlab.rendering.channels" in graph
    assert "splatlab.rendering.channels" in graph["splatlab.training.trainer"]
    assert len(graph) > 50
