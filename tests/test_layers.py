"""The layering of docs/DEVELOPING.md holds: imports only point down, and there are no cycles.

Every ``import mlmyths...`` in src/ counts, at module level or inside a function, so a
function-level import cannot hide an upward arrow or a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mlmyths"

#: layer of each top-level part of the package (higher may import lower, never the reverse)
LAYERS = {
    "errors": 0,
    "files": 1, "extras": 1, "config": 1, "stats": 1, "claims": 1, "measure": 1, "progress": 1, "env": 1,
    "records": 2,
    "data": 3, "plots": 3, "augment": 3, "native": 3, "tensorcalc": 3,
    "models": 4, "train": 4, "hessians": 4,
    "bias": 5, "reuse": 5, "forgetting": 5, "saliency": 5,
    "integrations": 6,
    "executors": 7, "runs": 7, "report": 7,
    "myths": 8,
    "cli": 9, "__main__": 10, "__init__": 10,
}
#: imports allowed although they point sideways within one layer of the table (documented in DEVELOPING.md)
SAME_LAYER_OK = {("records", "claims"), ("bias", "reuse"), ("runs", "executors")}
FORBIDDEN = {("runs", "report"), ("report", "runs")}  # the orchestrator and the view know only records


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mlmyths")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("mlmyths"):
                out.add(name)
                for a in node.names:  # "from mlmyths import data" imports the module mlmyths.data
                    sub = SRC.parent / f"{name}.{a.name}".replace(".", "/")
                    if sub.with_suffix(".py").exists() or sub.is_dir():
                        out.add(f"{name}.{a.name}")
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in SRC.rglob("*.py"):
        graph[_module_name(path)] = {i for i in _imports(path) if i != "mlmyths"}
    return graph


def test_every_part_has_a_layer():
    parts = {_part(m) for m in _graph()}
    assert parts <= set(LAYERS), f"give these a layer in tests/test_layers.py and docs/DEVELOPING.md: {parts - set(LAYERS)}"


def test_imports_point_down():
    upward = []
    for module, imports in _graph().items():
        src = _part(module)
        for target in imports:
            dst = _part(target)
            if dst == src or (src, dst) in SAME_LAYER_OK:
                continue
            if (src, dst) in FORBIDDEN or LAYERS[dst] >= LAYERS[src]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_no_import_cycles_outside_tensorcalc():
    graph = _graph()
    modules = {m for m in graph if not m.startswith("mlmyths.tensorcalc")}

    def resolve(name: str) -> str | None:  # "mlmyths.data.load" is the module mlmyths.data
        while name and name not in graph:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    edges = {m: {r for t in graph[m] if (r := resolve(t)) in modules and r != m} for m in modules}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if seen.get(nxt) == 1 and not (node.startswith(nxt + ".") or nxt.startswith(node + ".")):
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for m in sorted(edges):
        if m not in seen:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("name", ["runs", "report", "myths", "cli"])
def test_library_code_never_imports_the_top_floor(name):
    library = [p for p in SRC.rglob("*.py") if LAYERS[_part(_module_name(p))] <= LAYERS["integrations"]]
    offenders = [str(p.relative_to(SRC)) for p in library if any(_part(i) == name for i in _imports(p))]
    assert not offenders, f"library modules importing mlmyths.{name}: {offenders}"
