"""The batch grader against a corpus of hostile submissions (tests/grading_corpus/), graded twice."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from minilm.cli import main
from minilm.grading.grader import GradeOptions, Grader, grade
from minilm.grading.isolation import namespaces_available
from minilm.grading.sandbox import Zygote

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "grading_corpus"
FLAGS = [
    "--jobs",
    "2",
    "--cell-timeout",
    "2",
    "--timeout",
    "6",
    "--memory-mb",
    "1024",
    "--seed",
    "20240501",
]

# student -> (status, total points out of 9)
EXPECTED = {
    "correct": ("ok", 9),
    "blank": ("ok", 0),
    "partly_correct": ("ok", 4),
    "hardcoded": ("ok", 0),
    "monkeypatch": ("ok", 0),
    "always_equal": ("ok", 0),
    "fake_passed": ("ok", 0),
    "os_exit": ("crashed", 0),
    "infinite_loop": ("timeout", 6),
    "stubborn_loop": ("timeout", 0),
    "memory_hog": ("memory", 6),
    "output_flood": ("ok", 9),
    "read_solutions": ("ok", 0),
    "renamed": ("missing exercise", 7),
    "deleted_cell": ("missing exercise", 4),
    "invalid_json": ("invalid notebook", 0),
    "not_a_notebook": ("invalid notebook", 0),
    "nbformat_v3": ("ok", 9),
    "forge_results": ("ok", 0),
    "library_reference": ("ok", 0),
    "disk_filler": ("ok", 9),
}


def _rows(out: Path) -> list[dict]:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _submissions(folder: Path) -> Path:
    """The corpus as an LMS export delivers it: every file named <student>.ipynb. The broken ones
    are stored as `.ipynb.broken` so that nothing in the repository is a committed invalid notebook."""
    for f in CORPUS.iterdir():
        if f.suffix in (".ipynb", ".broken"):
            shutil.copy(f, folder / f.name.removesuffix(".broken"))
    return folder


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out1, out2 = tmp_path_factory.mktemp("run1"), tmp_path_factory.mktemp("run2")
    submissions = _submissions(tmp_path_factory.mktemp("submissions"))
    if not namespaces_available():  # pragma: no cover - e.g. a container without CAP_SYS_ADMIN
        pytest.skip(
            "this kernel/container refuses namespaces: the sandboxed grader would refuse to run"
        )
    assert main(["grade", "01", str(submissions), "--out", str(out1), *FLAGS]) == 0
    manifest = json.loads((out1 / "grading.json").read_text())
    opts = GradeOptions(jobs=2, cell_timeout=2, timeout=6, memory_mb=1024, seed=manifest["seed"])
    with open(os.devnull, "w") as devnull:
        grade("01_text_tokens", submissions, out2, opts, log=devnull)
    return out1, out2


def test_every_submission_gets_the_status_and_score_it_deserves(two_runs):
    out1, _ = two_runs
    rows = _rows(out1)
    students = [r["student"] for r in rows]
    assert sorted(students) == sorted(EXPECTED), "every corpus file appears exactly once"
    got = {r["student"]: (r["status"], float(r["total"])) for r in rows}
    assert got == {k: (s, float(p)) for k, (s, p) in EXPECTED.items()}
    for r in rows:
        parts = sum(
            float(r[ex])
            for ex in ("char_encode", "char_decode", "count_pairs", "apply_merges", "train_bpe")
        )
        assert parts == float(r["total"])
        assert (out1 / "feedback" / f"{r['student']}.txt").is_file()


def test_grading_twice_gives_identical_gradebooks(two_runs):
    out1, out2 = two_runs
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(_rows(out1)) == strip(_rows(out2))
    for f in (out1 / "feedback").iterdir():
        assert f.read_text() == (out2 / "feedback" / f.name).read_text(), f.name


def test_manifest_records_seed_isolation_and_limits(two_runs):
    out1, _ = two_runs
    m = json.loads((out1 / "grading.json").read_text())
    assert m["seed"] == 20240501 and m["set"] == "01_text_tokens" and m["students"] == len(EXPECTED)
    assert m["isolation"] in ("uid+namespaces", "namespaces")
    if os.geteuid() == 0:
        assert m["isolation"] == "uid+namespaces"
    assert m["options"]["memory_mb"] == 1024


def test_feedback_explains_what_happened(two_runs):
    fb = {p.stem: p.read_text() for p in (two_runs[0] / "feedback").iterdir()}
    assert "Score: 9 / 9" in fb["correct"] and "8 of 8 grading cases passed" in fb["correct"]
    assert "not attempted" in fb["blank"]
    assert "not plain data" in fb["always_equal"]
    assert "missing: no function or class named count_pairs" in fb["renamed"]
    assert "converted from nbformat 3" in fb["nbformat_v3"]
    assert "not valid JSON" in fb["invalid_json"]
    assert "Memory limit" in fb["memory_hog"] and "Time limit" in fb["infinite_loop"]
    assert "printed" in fb["output_flood"]
    assert "PASSED" not in fb["fake_passed"]  # the student's own output never reaches the feedback


def test_seed_is_reused_from_a_previous_run(tmp_path):
    (tmp_path / "grading.json").write_text(json.dumps({"set": "01_text_tokens", "seed": 4242}))
    assert Grader("01", tmp_path, GradeOptions()).seed == 4242
    assert Grader("01", tmp_path, GradeOptions(seed=7)).seed == 7
    fresh = tmp_path / "fresh"
    assert isinstance(Grader("01", fresh, GradeOptions()).seed, int)


PROBE = r"""
import json, os, socket
found = {"uid": os.getuid(), "tmp": sorted(os.listdir("/tmp")), "cwd": os.getcwd()}
for name, path in SECRETS.items():
    try:
        found[name] = os.listdir(path) if os.path.isdir(path) else open(path).read()[:50]
    except OSError as e:
        found[name] = type(e).__name__
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    found["net"] = "connected"
except OSError as e:
    found["net"] = type(e).__name__
try:
    open(os.path.join(REPO, "written_by_child.txt"), "w").write("x")
    found["write_repo"] = "written"
except OSError as e:
    found["write_repo"] = type(e).__name__
open("probe.json", "w").write(json.dumps(found))
"""


def test_sandbox_hides_solutions_repo_history_and_network(tmp_path):
    if not namespaces_available():  # pragma: no cover
        pytest.skip("this kernel/container refuses namespaces")
    secrets = {
        "solutions_dir": str(ROOT / "solutions"),
        "solution_file": str(ROOT / "solutions" / "01_text_tokens.ipynb"),
        "git": str(ROOT / ".git"),
        "submissions": str(CORPUS),
        "out": str(tmp_path),
    }
    # a world-readable copy of the solutions that nobody told the grader about (another checkout,
    # a teacher's download folder): the child must not see it either
    stray = Path(tempfile.mkdtemp(prefix=".stray-copy-", dir=ROOT))  # outside /tmp, not hidden
    shutil.copy(ROOT / "solutions" / "01_text_tokens.ipynb", stray)
    stray.chmod(0o755)
    (stray / "01_text_tokens.ipynb").chmod(0o644)
    hidden = list(secrets.values())
    secrets["stray_copy"] = str(stray / "01_text_tokens.ipynb")
    secrets["proc_of_parent"] = f"/proc/{os.getpid()}/root{ROOT}/solutions"
    work = Path(tempfile.mkdtemp(prefix="probe-"))
    try:
        cells = [f"SECRETS = {secrets!r}\nREPO = {str(ROOT)!r}", PROBE]
        (work / "job.json").write_text(
            json.dumps({"set": "01_text_tokens", "cells": cells, "exercises": []})
        )
        uid = 1_900_000_063 if os.geteuid() == 0 else None
        if uid is not None:
            os.chown(work, uid, uid)
        zygote = Zygote(tmp_path / "sandbox.log", work)
        try:
            reply = zygote.run(
                {
                    "workdir": str(work),
                    "uid": uid,
                    "hide": hidden,
                    "memory_mb": 512,
                    "timeout": 20,
                    "cell_timeout": 10,
                    "require_namespaces": True,
                }
            )
        finally:
            zygote.close()
        assert not reply.get("setup_error"), reply
        found = json.loads((work / "probe.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(stray, ignore_errors=True)
    assert reply["exit"] == 0 and not reply["timed_out"]
    for name in secrets:
        assert found[name] in ("PermissionError", "FileNotFoundError", []), (name, found[name])
    assert found["tmp"] == ["work"] and found["cwd"] == "/tmp/work"
    assert found["net"] != "connected"
    assert found["write_repo"] != "written" and not (ROOT / "written_by_child.txt").exists()
    if os.geteuid() == 0:
        assert found["uid"] == uid
