"""The import rules of the flat layout, read from the source with `ast` (nothing is imported).

Entry scripts may import libraries; no module imports an entry script, in any form, at the top
or inside a function. The modules of the repository (top-level, `data/`, `benchmarks/`,
`scripts/`) import each other without a cycle, imports inside functions counted. The data
preparation side (`data/`, `create_pretraining_data.py`, `scripts/`) reaches the command-line
layer (`cli.py`) but never the run layer (`runtime.py`), directly or through another module.
Test modules may import entry scripts (they test them), but never another test module: what
tests share lives in tests/support.py (helpers) and tests/conftest.py (fixtures).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO_ROOT

ENTRY_SCRIPTS = frozenset(
    {
        "run_pretraining",
        "run_squad",
        "run_glue",
        "create_pretraining_data",
        "inference",
        "export_onnx",
        "convert_checkpoint",
    }
)

PACKAGES = ("data", "benchmarks", "scripts")

# Modules that prepare or inspect data: they parse flags and check paths, and set up no run.
DATA_SIDE = ("data.", "scripts.", "create_pretraining_data", "pretraining_instances")


def source_files() -> list[Path]:
    """Every .py file of the repository outside tests/ (and hidden or virtualenv folders)."""
    files = []
    for path in sorted(REPO_ROOT.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).parts
        if parts[0] == "tests" or any(p.startswith(".") or p in ("venv", "results") for p in parts):
            continue
        files.append(path)
    return files


def module_name(path: Path) -> str:
    """`data/pipeline.py` -> `data.pipeline`; `modeling.py` -> `modeling`."""
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)


def imported_names(source: str, module: str) -> set[str]:
    """Every module name an import statement anywhere in `source` (functions included) names.

    `import a.b` gives `a.b`; `from a import b` gives `a` and `a.b` (b may be a submodule);
    relative imports are resolved against `module`'s package."""
    names: set[str] = set()
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            if base:
                names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return names


def file_imports(path: Path) -> set[str]:
    return imported_names(path.read_text(encoding="utf-8"), module_name(path))


def import_graph() -> dict[str, set[str]]:
    """Repository module -> the repository modules it imports.

    A name resolves to the longest repository module it starts with (`data.pipeline.X` ->
    `data.pipeline`); a bare name imported from a file in `scripts/` may be its sibling (the
    scripts put their own folder on `sys.path`)."""
    paths = {module_name(path): path for path in source_files()}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        folder = module.rpartition(".")[0]
        targets = set()
        for name in file_imports(path):
            parts = name.split(".")
            candidates = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
            if folder in PACKAGES:
                candidates.append(f"{folder}.{parts[0]}")
            found = next((c for c in candidates if c in paths and c not in PACKAGES), None)
            if found and found != module:
                targets.add(found)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def imported_test_modules(source: str, module: str, test_modules: set[str]) -> set[str]:
    """The test modules (`test_x`) that `source`, the file of `module`, imports in any form:
    `tests.test_x`, `from tests import test_x`, `from .test_x import`, or bare `test_x` (pytest
    puts tests/ on the path)."""
    found = set()
    for name in imported_names(source, module):
        parts = name.split(".")
        target = parts[1] if parts[0] == "tests" and len(parts) > 1 else parts[0]
        if target in test_modules:
            found.add(target)
    return found


def test_no_test_module_imports_another():
    folder = REPO_ROOT / "tests"
    test_modules = {path.stem for path in folder.glob("test_*.py")}
    assert {"test_imports", "test_pipeline", "test_output_lock"} <= test_modules
    offenders = []
    for path in sorted(folder.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for target in sorted(imported_test_modules(source, f"tests.{path.stem}", test_modules)):
            offenders.append(f"tests/{path.name} imports {target}: move it to support/conftest")
    assert not offenders, "\n".join(offenders)


def test_the_test_walk_sees_every_form():
    modules = {"test_a", "test_b", "test_c", "test_d", "test_e"}
    source = (
        "from tests.test_a import helper\n"
        "from tests import test_b\n"
        "def f():\n"
        "    from .test_c import thing\n"
        "    import test_d\n"
        "from tests.support import test_e_like\n"
        "import tests.support, test_shared_name_not_a_module\n"
    )
    assert imported_test_modules(source, "tests.test_x", modules) == {
        "test_a",
        "test_b",
        "test_c",
        "test_d",
    }


def test_no_module_imports_an_entry_script():
    offenders = []
    for path in source_files():
        for name in file_imports(path):
            if name.split(".")[0] in ENTRY_SCRIPTS:
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_walk_sees_every_import_form():
    source = (
        "import run_squad\n"
        "from run_glue import main\n"
        "import inference as inf, os\n"
        "def f():\n"
        "    from data import pipeline\n"
        "    import export_onnx.sub\n"
        "class C:\n"
        "    def g(self):\n"
        "        from . import convert_checkpoint\n"
    )
    assert imported_names(source, "sample") >= {
        "run_squad",
        "run_glue",
        "inference",
        "os",
        "data",
        "data.pipeline",
        "export_onnx.sub",
        "convert_checkpoint",
    }


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"modeling", "data.pipeline", "data.stages", "benchmarks.harness"} <= set(graph)
    assert "data.stages" in graph["data.sharding"] and "modeling" in graph["checkpoint"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_data_side_never_reaches_the_run_layer():
    graph = import_graph()
    data_side = [m for m in graph if m.startswith(DATA_SIDE)]
    assert {"data.pipeline", "data.bertPrep", "create_pretraining_data"} <= set(data_side)
    assert all("cli" in reachable(graph, m) for m in ("data.pipeline", "create_pretraining_data"))
    offenders = [m for m in sorted(data_side) if "runtime" in reachable(graph, m)]
    assert not offenders, f"these reach runtime.py: {offenders}"
    assert "runtime" in reachable(graph, "run_squad")  # the walk does see the run layer


def test_find_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a2"}, "a2": set(), "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
