"""The grader works wherever the course is installed: a virtual environment with minilm in it under
the temporary folder (which the sandbox replaces by a private one) and under the home folder."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from minilm.grading.isolation import namespaces_available

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "grading_corpus"


def _venv_with_minilm(base: str) -> Path:
    """A venv under `base` that runs this environment's packages and its own copy of minilm."""
    venv = Path(tempfile.mkdtemp(prefix="minilm-venv-", dir=base))
    venv.chmod(0o755)  # as `python -m venv` makes it (mkdtemp's 0700 would hide it from the child)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    outer = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "outer_env.pth").write_text("\n".join(outer) + "\n")
    shutil.copytree(ROOT / "minilm", site / "minilm", ignore=shutil.ignore_patterns("__pycache__"))
    return venv


@pytest.mark.parametrize("where", ["tmp", "home"])
def test_grading_works_with_the_venv_and_minilm_under(where, tmp_path):
    if not namespaces_available():  # pragma: no cover
        pytest.skip("this kernel/container refuses namespaces")
    base = tempfile.gettempdir() if where == "tmp" else str(Path.home())
    if not os.access(base, os.W_OK):  # pragma: no cover
        pytest.skip(f"{base} is not writable here")
    venv = _venv_with_minilm(base)
    try:
        subs = tmp_path / "subs"
        subs.mkdir()
        shutil.copy(CORPUS / "correct.ipynb", subs)
        out = tmp_path / "out"
        python = venv / "bin" / "python"
        check = subprocess.run(
            [str(python), "-c", "import minilm, sys; print(minilm.__file__, sys.prefix)"],
            check=True, capture_output=True, text=True, cwd=tmp_path,
        )
        assert check.stdout.startswith(str(venv)), check.stdout  # minilm and the prefix live there
        run = subprocess.run(
            [str(python), "-m", "minilm.cli", "grade", "01", str(subs), "--out", str(out),
             "--solutions", str(ROOT / "solutions"), "--cell-timeout", "5", "--timeout", "20"],
            check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
        with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
            rows = {r["student"]: (r["status"], r["total"]) for r in csv.DictReader(f)}
        assert rows == {"(max points)": ("max points", "9"), "correct": ("ok", "9")}
    finally:
        shutil.rmtree(venv, ignore_errors=True)
