"""The batch grader against a corpus of hostile submissions (tests/grading_corpus/), graded twice,
read the way a teacher reads it: the gradebook, the feedback files, grading.json.

The suite runs at whatever isolation level the machine gives (`uid+namespaces` as root,
`namespaces` as a normal user); the weaker levels (`uid`, `process`) are checked where namespaces
are refused, as in a default Docker container (tests/docker_like.py)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_grading_forbid_construction import _others_can_run
from test_grading_hostile_sets import readable_python

from minilm.cli.commands import main
from minilm.grading.compare import decode, encode
from minilm.grading.grader import GradeOptions, Grader, grade
from minilm.grading.isolation import namespaces_available
from minilm.grading.verdict import STATUSES
from minilm.grading.zygote import Zygote

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "grading_corpus"
LIMITS = ["--cell-timeout", "2", "--timeout", "5", "--memory-mb", "1024"]
FLAGS = ["--jobs", "2", *LIMITS, "--seed", "20240501"]
IDS = ("char_encode", "char_decode", "count_pairs", "apply_merges", "train_bpe")

# student -> (status, total points out of 9)
EXPECTED = {
    "correct": ("ok", 9),
    "blank": ("not attempted", 0),
    "partly_correct": ("ok", 4),
    "hardcoded": ("ok", 0),
    "monkeypatch": ("ok", 0),
    "always_equal": ("ok", 0),
    "fake_passed": ("not attempted", 0),  # its exercises are the stubs handed out
    "os_exit": ("crashed", 0),
    "infinite_loop": ("timeout", 6),
    "stubborn_loop": ("timeout", 0),
    "sleeper": ("timeout", 9),
    "memory_hog": ("memory", 6),
    "output_flood": ("ok", 9),
    "read_solutions": ("ok", 0),
    "renamed": ("missing exercise", 7),
    "deleted_cell": ("missing exercise", 4),
    "invalid_json": ("invalid notebook", 0),
    "not_a_notebook": ("invalid notebook", 0),
    "nbformat_v3": ("ok", 9),
    "forge_results": ("not attempted", 0),  # its exercises are the stubs handed out
    "library_reference": ("ok", 0),
    "disk_filler": ("ok", 9),
    "kill_everyone": ("ok", 9),
    "work_folder_traps": ("ok", 9),
    "forged_snapshot_then_exit": ("crashed", 0),
    "garbage_snapshot": ("crashed", 0),
    "late_forger": ("ok", 9),  # its fork is refused (no process may start), so nothing forges or kills
    "untrusted_text": ("ok", 8),
    "magic_lookalikes": ("ok", 9),
    "threads_and_pools": ("ok", 9),
    "library_shortcuts": ("ok", 0),
    "construction_escapes": ("ok", 0),  # raw _thread, C caller, forked server, exec'd module, renamed copy
    "modifies_input": ("ok", 1),
}
# file names an LMS export may hold: not UTF-8, spreadsheet formulas, too long for "<name>.txt"
ODD_NAMES = [
    b"\xff\xfe-latin1-\xe9t\xe9.ipynb",
    b'=HYPERLINK("example.com","x").ipynb',
    b"+cmd.ipynb",
    b"-2+3.ipynb",
    b"@SUM(A1).ipynb",
    b"x" * 249 + b".ipynb",
    "张".encode() * 83 + b".ipynb",
]


def _rows(out: Path) -> list[dict]:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["status"] != "max points"]  # the "(max points)" row


def _submissions(folder: Path, names: dict | None = None) -> Path:
    """The corpus as an LMS export delivers it: every file named <student>.ipynb. The broken ones
    are stored as `.ipynb.broken` so that nothing in the repository is a committed invalid notebook."""
    for f in CORPUS.iterdir():
        if f.suffix in (".ipynb", ".broken") and (names is None or f.name.split(".")[0] in names):
            shutil.copy(f, folder / f.name.removesuffix(".broken"))
    return folder


SLOW = {"infinite_loop", "stubborn_loop", "sleeper", "output_flood"}  # graded once: they only cost time


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out1, out2 = tmp_path_factory.mktemp("run1"), tmp_path_factory.mktemp("run2")
    submissions = _submissions(tmp_path_factory.mktemp("submissions"))
    for name in ODD_NAMES:
        shutil.copy(CORPUS / "correct.ipynb", os.path.join(os.fsencode(submissions), name))
    if not namespaces_available():  # pragma: no cover - see test_without_namespaces_*
        pytest.skip("this kernel/container refuses namespaces: the sandboxed grader would refuse to run")
    assert main(["grade", "01", str(submissions), "--out", str(out1), *FLAGS]) == 0
    again = tmp_path_factory.mktemp("again")
    for f in submissions.iterdir():
        if f.name.removesuffix(".ipynb") not in SLOW:
            shutil.copy(f, again / f.name)
    manifest = json.loads((out1 / "grading.json").read_text())
    opts = GradeOptions(jobs=2, cell_timeout=2, timeout=5, memory_mb=1024, seed=manifest["seed"])
    with open(os.devnull, "w") as devnull:
        grade("01_text_tokens", again, out2, opts, log=devnull)
    return out1, out2


def _feedback(out: Path) -> dict[str, str]:
    return {r["student"]: (out / "feedback" / r["feedback"]).read_text(encoding="utf-8") for r in _rows(out)}


def test_every_submission_gets_the_status_and_score_it_deserves(two_runs):
    out1, _ = two_runs
    rows = _rows(out1)
    got = {r["student"]: (r["status"], float(r["total"])) for r in rows if r["student"] in EXPECTED}
    assert got == {k: (s, float(p)) for k, (s, p) in EXPECTED.items()}
    for r in rows:
        assert sum(float(r[ex]) for ex in IDS) == float(r["total"])


def test_every_file_appears_exactly_once_with_its_feedback_whatever_its_name(two_runs):
    out1, _ = two_runs
    rows = _rows(out1)
    assert len(rows) == len(EXPECTED) + len(ODD_NAMES)
    odd = [r for r in rows if r["student"] not in EXPECTED]
    assert len(odd) == len(ODD_NAMES) and all((r["status"], r["total"]) == ("ok", "9") for r in odd)
    files = [r["feedback"] for r in rows]
    assert len(set(files)) == len(files), "two students share a feedback file"
    for r in rows:
        path = out1 / "feedback" / r["feedback"]
        assert path.is_file() and len(os.fsencode(path.name)) <= 255
        assert r["feedback"] == path.name
    assert any("\\udcff" in r["student"] for r in odd), "a name that is not UTF-8 is shown escaped"
    for r in rows:  # no cell a spreadsheet would run as a formula
        for value in r.values():
            assert value[:1] not in ("=", "+", "-", "@"), r
    assert {r["student"][:2] for r in odd} >= {"'=", "'+", "'-", "'@"}


def test_feedback_and_gradebook_are_clean_text_whatever_a_submission_printed_or_raised(two_runs):
    out1, _ = two_runs
    texts = [p.read_bytes() for p in (out1 / "feedback").iterdir()] + [(out1 / "gradebook.csv").read_bytes()]
    for raw in texts:
        text = raw.decode("utf-8")  # strict: no lone surrogates, no invalid bytes
        assert not [c for c in text if (ord(c) < 32 and c not in "\n\t\r") or c in "\x7f\u202e\u2066"]
    fb = _feedback(out1)["untrusted_text"]
    assert "\\ud800" in fb and "\\x1b" in fb and "\\u202e" in fb and "\\udcff" in fb
    assert "Score: 8 / 9" in fb and "RuntimeError: exercise error" in fb


def test_grading_twice_gives_identical_gradebooks(two_runs):
    out1, out2 = two_runs
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(r for r in _rows(out1) if r["student"] not in SLOW) == strip(_rows(out2))
    for f in (out2 / "feedback").iterdir():
        assert f.read_text() == (out1 / "feedback" / f.name).read_text(), f.name


def test_manifest_records_seed_isolation_limits_and_counts(two_runs):
    out1, _ = two_runs
    m = json.loads((out1 / "grading.json").read_text())
    n = len(EXPECTED) + len(ODD_NAMES)
    assert m["seed"] == 20240501 and m["set"] == "01_text_tokens" and m["students"] == n
    assert m["isolation"] in ("uid+namespaces", "namespaces")
    if os.geteuid() == 0:
        assert m["isolation"] == "uid+namespaces"
    assert m["options"]["memory_mb"] == 1024 and sum(m["counts"].values()) == n
    assert set(m["counts"]) == set(STATUSES) and "error" not in m


def test_feedback_explains_what_happened(two_runs):
    fb = _feedback(two_runs[0])
    assert "Score: 9 / 9" in fb["correct"]
    assert re.search(r"(\d+) of \1 grading cases passed", fb["correct"])  # the public cases and the drawn ones
    assert "not attempted" in fb["blank"]
    assert "not plain data" in fb["always_equal"]
    assert "missing: no function or class named count_pairs" in fb["renamed"]
    assert "converted from nbformat 3" in fb["nbformat_v3"] and "nothing for you to do" in fb["nbformat_v3"]
    assert "not valid JSON" in fb["invalid_json"]
    assert "Memory limit" in fb["memory_hog"] and "Time limit" in fb["infinite_loop"]
    assert "used more CPU time" in fb["infinite_loop"] and "waited too long" in fb["sleeper"]
    assert "printed" in fb["output_flood"] and "costs no points" in fb["output_flood"]
    assert "PASSED" not in fb["fake_passed"]  # the student's own output never reaches the feedback
    assert "exit code 3" in fb["forged_snapshot_then_exit"]
    assert "raised PermissionError" in fb["late_forger"]  # its fork: no process may start
    for ex in IDS:
        line = next(ln for ln in fb["construction_escapes"].splitlines() if ln.startswith(ex + ":"))
        assert line.startswith(f"{ex}: 0/"), line
    assert "is a copy of the library's minilm.data.tokenizers.merge" in fb["construction_escapes"]
    assert "CharTokenizer.encode" in fb["construction_escapes"] and "CharTokenizer.decode" in fb["construction_escapes"]
    assert "incomplete" in fb["garbage_snapshot"] or "could not be read" in fb["garbage_snapshot"]
    for ex in IDS:
        line = next(ln for ln in fb["library_shortcuts"].splitlines() if ln.startswith(ex + ":"))
        assert "not allowed in this exercise: " in line and "minilm.data.tokenizers" in line and "asks you to write it" in line
    assert "modified its input (argument 2)" in fb["modifies_input"]
    assert "modified its input (argument 1)" in fb["modifies_input"]
    assert "compared by type" in fb["modifies_input"]
    call = fb["partly_correct"].split("paste into a cell:\n", 1)[1].splitlines()[0].strip()
    assert call.startswith("apply_merges(") and "..." not in call  # complete, paste-able


def test_a_run_that_cannot_grade_writes_no_gradebook(tmp_path, monkeypatch):
    import minilm.grading.grader as grader_module

    class BrokenZygote:
        def __init__(self, *args, **kwargs):
            pass

        def run(self, *args, **kwargs):
            raise RuntimeError("the sandbox broke")

        def close(self):
            pass

    monkeypatch.setattr(grader_module, "Zygote", BrokenZygote)
    (tmp_path / "subs").mkdir()
    subs = _submissions(tmp_path / "subs", {"correct", "blank"})
    out = tmp_path / "out"
    assert main(["grade", "01", str(subs), "--out", str(out)]) == 2
    assert not (out / "gradebook.csv").exists() and not (out / "grading.json").exists()  # no 0s (issue 21)


def test_seed_is_reused_from_a_previous_run(tmp_path):
    (tmp_path / "grading.json").write_text(json.dumps({"set": "01_text_tokens", "seed": 4242}))
    assert Grader("01", tmp_path, GradeOptions()).seed == 4242
    assert Grader("01", tmp_path, GradeOptions(seed=7)).seed == 7
    fresh = tmp_path / "fresh"
    assert isinstance(Grader("01", fresh, GradeOptions()).seed, int)


def test_a_teacher_without_solutions_is_told_where_they_come_from(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "subs").mkdir()
    code = main(["grade", "01", "subs", "--out", "out", "--solutions", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and "not part of the minilm package" in err and "--solutions DIR" in err
    assert "github.com" in err


PROBE = r"""
import json, os, socket
found = {"uid": os.getuid(), "tmp": sorted(os.listdir("/tmp")), "cwd": os.getcwd(), "pid": os.getpid()}
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


def char_encode(*args):
    return found
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
        exercises = [{"id": "char_encode", "args": [encode(("", {}))]}]
        (work / "job.json").write_text(json.dumps({"set": "01_text_tokens", "cells": cells, "exercises": exercises}))
        uid = 1_900_000_063 if os.geteuid() == 0 else None
        zygote = Zygote(tmp_path / "sandbox.log", work)
        try:
            request = {"workdir": str(work), "uid": uid, "hide": hidden, "memory_mb": 512, "timeout": 20,
                       "cell_timeout": 10, "require_namespaces": True}
            reply, data = zygote.run(request, timeout=120)
        finally:
            zygote.close()
        assert not reply.get("setup_error"), reply
        results = json.loads(data)
        assert results["cells"] == [], results["cells"]
        found = decode(results["exercises"]["char_encode"]["cases"][0]["value"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(stray, ignore_errors=True)
    assert reply["exit"] == 0 and not reply["timed_out"] and results["done"] is True
    for name in secrets:
        assert found[name] in ("PermissionError", "FileNotFoundError", []), (name, found[name])
    exposed_in_tmp = {p.split("/")[2] for p in (sys.prefix, sys.base_prefix, str(ROOT)) if p.startswith("/tmp/")}
    assert set(found["tmp"]) <= {"work"} | exposed_in_tmp and "work" in found["tmp"]
    assert found["cwd"] == "/tmp/work" and found["pid"] == 2  # PID 1 is the sandbox's supervisor
    assert found["net"] != "connected"
    assert not (ROOT / "written_by_child.txt").exists()  # what it wrote stayed in its own memory
    if os.geteuid() == 0:
        assert found["uid"] == uid and found["write_repo"] != "written"


LEVEL_CORPUS = {"correct", "kill_everyone", "late_forger", "forge_results", "work_folder_traps", "os_exit", "sleeper"}


def _docker_like(args: list[str], cwd: Path, python: str = sys.executable) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tests" / "docker_like.py"), "--", python, "-m", "minilm.cli", *args]
    return subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_without_namespaces_the_teacher_is_told_what_to_do_and_the_weaker_level_holds(tmp_path):
    """As in a default Docker container (no CAP_SYS_ADMIN, namespaces refused by seccomp)."""
    from minilm.grading import seccomp

    if not seccomp.available():  # pragma: no cover
        pytest.skip("no seccomp syscall table for this architecture")
    (tmp_path / "subs").mkdir()
    subs = _submissions(tmp_path / "subs", LEVEL_CORPUS)
    refused = _docker_like(["grade", "01", str(subs), "--out", str(tmp_path / "refused"), *LIMITS], ROOT)
    assert refused.returncode == 2, refused.stderr
    assert "ask your instructor" not in refused.stderr and "--allow-unsandboxed" in refused.stderr
    if os.geteuid() == 0:
        assert "--cap-add SYS_ADMIN" in refused.stderr and "apparmor=unconfined" in refused.stderr
    else:
        assert "unprivileged user namespaces" in refused.stderr
    out = tmp_path / "weak"
    weak = _docker_like(["grade", "01", str(subs), "--out", str(out), "--allow-unsandboxed", *FLAGS], ROOT)
    if os.geteuid() == 0 and not _others_can_run(Path(sys.executable).resolve()):
        # as root the child runs under a uid of its own, which must be able to read Python: here it
        # cannot (Python under /root): the run stops, names the folders and the fixes, hands out no zeros
        assert weak.returncode == 2 and "Nothing was graded" in weak.stderr, weak.stderr
        assert "cannot read /" in weak.stderr and "/usr/bin/python3 -m venv" in weak.stderr, weak.stderr
        assert not (out / "gradebook.csv").exists()  # no rows of 0 that look like grades (issue 21)
        python, why = readable_python()  # one every user may read
        if python is None:  # pragma: no cover - depends on the machine
            pytest.skip(why)
        weak = _docker_like(["grade", "01", str(subs), "--out", str(out), "--allow-unsandboxed", *FLAGS], ROOT, python)
    assert weak.returncode == 0, weak.stderr
    level = json.loads((out / "grading.json").read_text())["isolation"]
    assert level.startswith("uid" if os.geteuid() == 0 else "process")
    got = {r["student"]: (r["status"], float(r["total"])) for r in _rows(out)}
    assert got == {k: (s, float(p)) for k, (s, p) in EXPECTED.items() if k in LEVEL_CORPUS}
