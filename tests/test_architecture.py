"""The map in docs/architecture.md is true: every module is on it, imports follow its arrows, and each
notebook's row names exactly the subpackages the notebook imports (issue 19)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
CORE = {"__init__", "runtime", "presets", "recipes", "plotting", "notebook_setup"}
CHAIN = ["core", "data", "models", "training", "generation", "finetune", "align", "bias", "cli"]


def stage_of(module: str) -> str:
    """'minilm.training.zoo' -> 'training'; a top-level module -> 'core'."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CORE:
        return "core"
    return parts[1]


def library_modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "minilm").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(module: str, path: Path) -> set[str]:
    """Absolute names of the minilm modules `module` imports, at the top or inside functions."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("minilm"):
                found.add(name)
                found.update(f"{name}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("minilm"))
    modules = library_modules()
    return {n for n in found if n in modules}


def layout_rows() -> list[str]:
    section = DOC.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `minilm/")]


def on_the_map(rel: str, rows: list[str]) -> bool:
    """A module is on the map when a row names its path, or the row of its package's folder names the
    module (`name` or `name.py`) or the sub-folder holding it (`sets/`)."""
    folder, name = rel.rsplit("/", 1)
    stem = name[:-3]
    for row in rows:
        first = row.split("|")[1]
        if f"`{rel}`" in first:
            return True
        listed = re.findall(r"`([^`]+)`", first)
        if listed and listed[0].startswith(folder + "/") and f"`{name}`" in first:
            return True  # `minilm/models/bigram.py`, `mlp.py`, ...
        for top in (p for p in listed if p.endswith("/")):
            if rel.startswith(top):
                rest = rel[len(top):]
                if "/" in rest and f"`{rest.split('/')[0]}/`" in row:
                    return True
                if f"`{stem}`" in row or f"`{name}`" in row or re.search(rf"`{re.escape(stem)}[`(]", row):
                    return True
    return False


def test_every_module_is_on_the_map():
    rows = layout_rows()
    missing = [path.relative_to(ROOT).as_posix() for module, path in library_modules().items()
               if path.name not in ("__init__.py", "__main__.py")
               and not on_the_map(path.relative_to(ROOT).as_posix(), rows)]
    assert not missing, f"docs/architecture.md's Layout table does not name {missing}: add it to a row"


def test_imports_follow_the_arrows():
    wrong = []
    for module, path in library_modules().items():
        here = stage_of(module)
        for target in imports_of(module, path):
            there = stage_of(target)
            if there == here or there == "core":
                continue
            if here == "grading" or there == "grading":
                if here == "cli":
                    continue  # the commands run the grader
                wrong.append(f"{module} -> {target} (grading stands beside the chain: core only)")
            elif here == "core" or CHAIN.index(there) > CHAIN.index(here):
                wrong.append(f"{module} ({here}) imports {target} ({there}), a later stage")
    assert not wrong, "imports against the map's arrows:\n" + "\n".join(wrong)


def notebook_subpackages(path: Path) -> set[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    found = set(re.findall(r"^\s*from minilm\.(\w+)", code, re.MULTILINE))
    found |= set(re.findall(r"^\s*from minilm import (\w+)", code, re.MULTILINE))
    found |= set(re.findall(r"^\s*import minilm\.(\w+)", code, re.MULTILINE))
    return {"core" if f in CORE else f for f in found}


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_each_notebooks_row_names_the_subpackages_it_imports(path):
    row = re.search(rf"^\| {re.escape(path.stem)} \|([^|]*)\|([^|]*)\|$", DOC, re.MULTILINE)
    assert row, f"the map in docs/architecture.md has no row for {path.stem}"
    listed = {w.strip() for cell in row.groups() for w in cell.split(",") if w.strip()}
    used = notebook_subpackages(path) - {"core"}
    assert used <= listed | {"core"}, f"{path.stem} imports {sorted(used - listed)}, not on its row"
    assert listed - {"core"} <= used, f"{path.stem}'s row names {sorted(listed - used - {'core'})}, unused"


def test_import_minilm_is_lazy_and_reaches_every_subpackage():
    code = ("import sys, minilm; heavy = [m for m in ('minilm.training', 'minilm.finetune', 'minilm.bias', "
            "'minilm.grading', 'transformers') if m in sys.modules]; assert not heavy, heavy; "
            "print(minilm.training.zoo.load_model.__module__)")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "minilm.training.zoo"


def test_no_module_re_exports_a_siblings_names():
    """Only a package's __init__ exposes names of other modules (its own); a module never does."""
    for module, path in library_modules().items():
        if path.name == "__init__.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                for alias in node.names:
                    assert alias.name != "*", f"{module}: a star import re-exports a sibling"
        text = path.read_text(encoding="utf-8")
        assert "re-exported" not in text, f"{module} says it re-exports names"
