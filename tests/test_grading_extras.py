"""The grader with each extra installed alone (issue 21): a teacher who installs only `minilm[grade]`
grades every set, and one without it is told which extra to install.

The suite's own environment has every extra, so the environments here are made of it: a virtual
environment whose site-packages hold hard links to the installed files (each distribution's RECORD)
of exactly the distributions that minilm's dependencies and the chosen extras need, and a copy of
minilm. What no requirement names (scikit-learn, scipy, transformers, ...) is not there at all, as
after `pip install torch==2.13.0 'minilm[grade]'`: `find_spec` gives None, `importlib.metadata` does
not list it. Hard links cost no space and take a few seconds; where they cannot be made (the suite
on another file system than its environment) the tests are skipped with that reason.
"""

from __future__ import annotations

import csv
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from minilm.grading.isolation import namespaces_available
from minilm.grading.sets import SET_MODULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NOT_IN_GRADE = ("sklearn", "scipy", "transformers", "sentence_transformers", "accelerate", "gguf", "pytest")


def closure(requirements: list[str]) -> dict[str, md.Distribution]:
    """{name: installed distribution} of `requirements` and everything they need (markers evaluated here)."""
    found: dict[str, md.Distribution] = {}
    todo = [(Requirement(r), "") for r in requirements]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # an optional part this environment lacks as well
        found[name] = dist
        for text in dist.requires or []:
            for wanted in ("", *req.extras):
                sub = Requirement(text)
                if sub.marker is None or sub.marker.evaluate({"extra": wanted}):
                    todo.append((sub, wanted))
                    break
    return found


def extras_alone(root: Path, extras: list[str]) -> Path:
    """A venv under `root` with minilm, its dependencies and `extras`, nothing else; its python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    for dist in closure(reqs).values():
        base = Path(dist.locate_file("")).resolve()
        for f in dist.files or []:
            src = Path(dist.locate_file(f)).resolve()
            if base not in src.parents or not src.is_file():
                continue  # scripts in bin/, files the RECORD names but that are gone
            dst = site / src.relative_to(base)
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except FileExistsError:
                pass
            except OSError as e:
                pytest.skip(f"cannot hard-link the environment's files into {root} ({e})")
    shutil.copytree(ROOT / "minilm", site / "minilm", ignore=shutil.ignore_patterns("__pycache__"))
    return venv / "bin" / "python"


def run(python: Path, code: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run([str(python), "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_the_closure_leaves_out_what_no_requirement_names():
    names = set(closure(["nbformat>=5.9", "torch>=2.2"]))
    assert {"nbformat", "torch", "jsonschema"} <= names and not names & {"scikit-learn", "transformers"}


@pytest.mark.slow
def test_with_only_the_grade_extra_every_set_grades_its_reference_at_full_marks(tmp_path):
    if not namespaces_available():  # pragma: no cover
        pytest.skip("this kernel/container refuses namespaces: the sandboxed grader would refuse to run")
    python = extras_alone(tmp_path, ["grade"])
    hidden = run(python, f"import importlib.util as u; print([m for m in {NOT_IN_GRADE!r} if u.find_spec(m)])", tmp_path)
    assert hidden.stdout.strip() == "[]", hidden.stderr  # none of them is there
    # every set with MINILM_EXTRAS_ALL_SETS=1 (done by hand for issue 21: 01-08 at full marks); by default the
    # sets whose forbidden lists name packages the extra does not bring (transformers in 06, scikit-learn and
    # scipy in 07), and 01
    names = list(SET_MODULES) if os.environ.get("MINILM_EXTRAS_ALL_SETS") else [
        n for n in SET_MODULES if n.startswith(("01", "06", "07"))]
    for name in names:
        subs = tmp_path / "subs" / name
        subs.mkdir(parents=True)
        shutil.copy(ROOT / "solutions" / f"{name}.ipynb", subs / "reference.ipynb")
    driver = (
        "import sys\nfrom minilm.cli.commands import main\n"
        f"for name in {names!r}:\n"
        f"    code = main(['grade', name, 'subs/' + name, '--out', 'out/' + name, '--solutions', {str(ROOT / 'solutions')!r}])\n"
        "    print(name, code, flush=True)\n"
    )
    result = run(python, driver, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in names:
        assert f"{name} 0" in result.stdout, result.stderr[-3000:]
        with open(tmp_path / "out" / name / "gradebook.csv", newline="", encoding="utf-8") as f:
            rows = {r["student"]: r for r in csv.DictReader(f)}
        top, ref = rows["(max points)"], rows["reference"]
        assert (ref["status"], ref["total"]) == ("ok", top["total"]), (name, ref)


def test_without_the_grade_extra_the_commands_name_the_extra_to_install(tmp_path):
    python = extras_alone(tmp_path, [])
    (tmp_path / "subs").mkdir()
    for argv in (["grade", "01", "subs", "--out", "out"], ["make-exercises", "--check"]):
        result = run(python, f"import sys\nfrom minilm.cli.commands import main\nsys.exit(main({argv!r}))", tmp_path, 120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "needs the `grade` extra" in result.stderr and "pip install 'minilm[grade]'" in result.stderr
        assert "missing: nbformat" in result.stderr
    assert not (tmp_path / "out").exists()
