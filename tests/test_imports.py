"""The import rules of the flat layout, read from the source with `ast` (nothing is imported).

Entry scripts may import libraries; no module imports an entry script, in any form, at the top
or inside a function. Tests are not checked: they run the entry scripts they test.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

ENTRY_SCRIPTS = frozenset({
    "run_pretraining", "run_squad", "run_glue", "create_pretraining_data", "inference",
    "export_onnx", "convert_checkpoint",
})  # fmt: skip

PACKAGES = ("data", "benchmarks", "scripts")


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
        "run_squad", "run_glue", "inference", "os", "data", "data.pipeline", "export_onnx.sub",
        "convert_checkpoint",
    }  # fmt: skip
