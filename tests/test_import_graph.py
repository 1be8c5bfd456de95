"""The engine's imports only point down: no cycles, and the core types and data loaders never reach up
into training, methods, setups or experiments. Walks the source with `ast`, so it keeps holding."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "autoft_core"
UPPER = ("autoft_core.finetune", "autoft_core.methods", "autoft_core.setups", "autoft_core.experiments")
LOWER = ("autoft_core.core", "autoft_core.data")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Engine modules `path` imports at run time (in functions too; `if TYPE_CHECKING:` blocks excluded)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{a.name}" for a in node.names} & modules
            found.update(submodules)
            # `from .. import kept_tensors` needs the package only as the ancestor it already is: an edge
            # to it would be a cycle that is not there
            if len(submodules) < len(node.names) or not name.startswith(base + "."):
                found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ENGINE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def test_the_walker_sees_known_edges(graph):
    assert "autoft_core.finetune" in graph["autoft_core.methods.base"]
    assert "autoft_core.kept_tensors" in graph["autoft_core.models.weights_cache"]  # from .. import kept_tensors
    assert "autoft_core" not in graph["autoft_core.models.weights_cache"]
    assert "autoft_core.core.recipe" in graph["autoft_core.config"]


def test_no_import_cycles(graph):
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)


def test_core_types_and_data_never_import_training_methods_setups_or_experiments(graph):
    bad = {(m, i) for m, imports in graph.items() if m.startswith(LOWER)
           for i in imports if i.startswith(UPPER)}
    assert not bad, f"lower layers import upper ones: {sorted(bad)}"
