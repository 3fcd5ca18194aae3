"""Finding and reading submitted notebooks: one student per entry, bad files named, links refused."""

from __future__ import annotations

import json
import os

import nbformat

from minilm.grading.submission import find_submissions, plain_python, read_submission


def test_every_entry_is_one_student_even_when_names_collide(tmp_path):
    (tmp_path / "alice.ipynb").write_text("{}")
    (tmp_path / "alice").mkdir()  # a folder that would also be "alice"
    (tmp_path / "bob").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "bob" / "whatever.ipynb")
    (tmp_path / "carol.txt").write_text("hello")
    (tmp_path / ".DS_Store").write_text("")
    found = dict(find_submissions(tmp_path))
    assert sorted(found) == ["alice", "alice.ipynb", "bob", "carol.txt"]
    assert found["bob"].name == "whatever.ipynb"


def test_bad_files_get_a_reason_and_no_cells(tmp_path):
    cases = {
        "link.ipynb": None,
        "binary.ipynb": b"\xff\xfe\x00",
        "list.ipynb": b"[1, 2]",
        "broken.ipynb": b'{"cells": [',
        "notes.txt": b"text",
    }
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    target = tmp_path / "real.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), target)
    os.symlink(target, tmp_path / "link.ipynb")
    reasons = {name: read_submission(name, tmp_path / name).problem for name in cases}
    assert "symbolic link" in reasons["link.ipynb"]
    assert "UTF-8" in reasons["binary.ipynb"]
    assert "not a notebook" in reasons["list.ipynb"]
    assert "JSON" in reasons["broken.ipynb"]
    assert "not a notebook file" in reasons["notes.txt"]
    assert read_submission("real", target).cells == []


def test_old_formats_are_upgraded_and_magics_become_what_jupyter_runs(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%matplotlib inline\n!ls\nx = 1")])
    v3 = nbformat.convert(nb, 3)
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.writes(v3, version=3))
    assert json.loads(path.read_text())["nbformat"] == 3
    sub = read_submission("old", path)
    assert sub.cells == ["get_ipython().run_line_magic('matplotlib', 'inline')\nget_ipython().system('ls')\nx = 1\n"]
    assert sub.notes == ["converted from nbformat 3 to 4"]


def test_percent_and_bang_inside_expressions_and_strings_are_python():
    for source in [
        "x = (10\n% 3)",
        's = """\n!not a shell\n%not a magic\n"""',
        "def f(a, b):\n    return (a\n            % b)",
        "x = 7 \\\n% 4",
    ]:
        assert plain_python(source) == source, source
    assert plain_python("%%time\nx = 1") == "get_ipython().run_cell_magic('time', '', 'x = 1\\n')\n"
    assert plain_python("files = !ls") == "files = get_ipython().getoutput('ls')\n"


def test_special_files_and_links_in_the_submissions_folder_are_invalid_never_read(tmp_path):
    os.mkfifo(tmp_path / "fifo.ipynb")  # reading it would block forever
    os.symlink("/dev/zero", tmp_path / "zero.ipynb")
    os.symlink(tmp_path / "missing", tmp_path / "dangling.ipynb")
    found = dict(find_submissions(tmp_path))
    assert sorted(found) == ["dangling", "fifo", "zero"]
    for student, path in found.items():
        sub = read_submission(student, path)
        assert sub.cells is None and "not a regular file" in sub.problem


def test_lms_names_group_one_students_files_and_an_empty_folder_is_invalid(tmp_path):
    nb = nbformat.v4.new_notebook()
    for name in ("Bo Li_20002_assignsubmission_file_01_text_tokens.ipynb",
                 "Bo Li_20002_assignsubmission_file_notes.ipynb",  # Moodle without folders: one student
                 "smithjohn_LATE_1001_5001_01_text_tokens.ipynb", "plain.ipynb"):
        nbformat.write(nb, tmp_path / name)
    (tmp_path / "Ann Lee_20003_assignsubmission_file_").mkdir()  # submitted nothing that is a notebook
    (tmp_path / "Ann Lee_20003_assignsubmission_file_" / "report.pdf").write_bytes(b"%PDF")
    found = dict(find_submissions(tmp_path, "01_text_tokens"))
    assert sorted(found) == ["Ann Lee_20003", "Bo Li_20002", "plain", "smithjohn_1001"]
    assert found["Bo Li_20002"].name.endswith("file_01_text_tokens.ipynb")  # the one named like the set
    assert "no .ipynb file" in read_submission("Ann Lee_20003", found["Ann Lee_20003"]).problem
