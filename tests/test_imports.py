"""The package's layers, read from its source: no import cycle anywhere in src/attnseq, and the SPEC's
modules (`modules/`) and the models (`models/`) import nothing of the layers above them.

Every import counts, at the top of a module or inside a function, except those under
`if TYPE_CHECKING:` (never run). `from attnseq.a import b` is an edge to attnseq.a.b where that is
a module, else to attnseq.a. A package's `__init__` that imports its own modules (the task
registry) makes no cycle by itself: only an import back into the importer's chain does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "attnseq"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
    """The attnseq modules `module` imports (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_reader_sees_imports_inside_functions_and_skips_type_checking_blocks():
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a"},
        "d": {"a"},
    }
    assert cycles(graph) == [["a", "b", "c"]]
    assert "attnseq.predict" in GRAPH["attnseq"]  # attnseq.load imports it inside the function
    assert "attnseq.tasks.translation" not in GRAPH["attnseq.readers"]  # only under TYPE_CHECKING there


def test_no_import_cycle_in_the_package():
    assert cycles(GRAPH) == []


LOWER = ("attnseq.modules", "attnseq.models")
HIGHER = ("attnseq.fast", "attnseq.tasks", "attnseq.checkpoint", "attnseq.translate", "attnseq.predict",
          "attnseq.cli", "attnseq.config", "attnseq.trainer", "attnseq.serve")  # fmt: skip


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(LOWER)))
def test_the_spec_and_the_models_import_no_higher_layer(module):
    above = sorted(m for m in GRAPH[module] if m.startswith(HIGHER) or m == "attnseq")
    assert above == [], f"{module} imports {above}"


def test_the_contracts_import_nothing_of_attnseq_but_its_error_type():
    assert GRAPH["attnseq.contracts"] <= {"attnseq.errors"}


def test_no_task_is_named_outside_the_task_modules():
    """A task is found through the registry, never compared by name (`task == "speech"`)."""
    names = ("translate", "classify", "speech", "chat", "headline")
    offenders = []
    for module, path in MODULES.items():
        if module.startswith("attnseq.tasks"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                literals = [c.value for c in (node.left, *node.comparators) if isinstance(c, ast.Constant)]
                literals += [e.value for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set))
                             for e in c.elts if isinstance(e, ast.Constant)]  # fmt: skip
                if any(v in names for v in literals):
                    offenders.append(f"{module}:{node.lineno}")
    assert offenders == []


# The layers of docs/architecture.md, lowest first: a module imports only from its own layer or
# below (scripts/architecture_picture.py draws them). Prefixes name packages or modules.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation: errors, files, contracts, config machinery, text, audio, data, metrics",
     ("attnseq.errors", "attnseq.fileio", "attnseq.contracts", "attnseq.schema", "attnseq.runtime",
      "attnseq.vocab", "attnseq.tokenize", "attnseq.catalogue", "attnseq.readers", "attnseq.batching",
      "attnseq.labelled", "attnseq.metrics", "attnseq.plotting", "attnseq.audio")),
    ("the SPEC's equations (reference)", ("attnseq.modules",)),
    ("models: forward(batch) -> LossOutput", ("attnseq.models",)),
    ("speed and search", ("attnseq.fast", "attnseq.decoding")),
    ("predictors and model directories", ("attnseq.translate", "attnseq.checkpoint", "attnseq.config_record",
                                          "attnseq.distributed")),
    ("applications (the task registry)", ("attnseq.tasks",)),
    ("entry points", ("attnseq.config", "attnseq.predict", "attnseq.trainer", "attnseq.train_state", "attnseq.run_dir",
                      "attnseq.progress_line", "attnseq.ablate",
                      "attnseq.serve", "attnseq.cli", "attnseq.__main__")),
]  # fmt: skip


def layer_of(module: str) -> int:
    if module == "attnseq":
        return len(LAYERS) - 1  # the package's own __init__: attnseq.load and friends
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise KeyError(module)


def test_every_module_has_a_layer_and_imports_only_its_own_layer_or_below():
    assert [m for m in MODULES if m != "attnseq" and not any(
        m == p or m.startswith(p + ".") for _, ps in LAYERS for p in ps)] == []  # fmt: skip
    upward = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets if layer_of(t) > layer_of(m))
    assert upward == []
