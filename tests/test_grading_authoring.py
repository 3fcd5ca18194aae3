"""solutions/ -> exercises/: the generator, the leak check, the authoring rules, public cases vs reference."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from minilm.cli.commands import main
from minilm.grading.authoring import (
    AuthoringError,
    exercise_cells,
    exercise_id,
    load_reference,
    make_exercise_notebook,
    make_exercises,
    notebook_text,
    read_notebook,
    solution_lines,
    strip_solutions,
)
from minilm.grading.compare import decode, encode, same
from minilm.grading.sets import SET_MODULES, all_sets, get_set

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9]*.ipynb"))


def test_every_solution_notebook_has_a_set_and_back():
    assert SOLUTIONS, "no solutions notebooks"
    assert sorted(p.stem for p in SOLUTIONS) == sorted(SET_MODULES)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_committed_exercises_are_exactly_the_generator_output(path):
    committed = (ROOT / "exercises" / path.name).read_text(encoding="utf-8")
    made = make_exercise_notebook(read_notebook(path), str(path), f"exercises/{path.name}")
    assert committed == notebook_text(made), (
        "exercises/ is stale: run `minilm make-exercises`"
    )


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_no_solution_text_leaks_into_exercises(path):
    nb = read_notebook(path)
    exercise = read_notebook(ROOT / "exercises" / path.name)
    code = "\n".join(c.source for c in exercise.cells if c.cell_type == "code")
    full = "\n".join(c.source for c in exercise.cells)
    assert "### BEGIN SOLUTION" not in full and "### END SOLUTION" not in full
    secret = [ln for _, src in exercise_cells(nb) for ln in solution_lines(src) if len(ln) >= 8]
    assert secret, "expected some solution lines to check"
    leaked = [ln for ln in secret if ln in code]
    assert not leaked, f"solution lines found in exercises/{path.name}: {leaked}"
    for cell in exercise.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_notebook_exercises_match_the_spec(path):
    ids = [ex_id for ex_id, _ in exercise_cells(read_notebook(path))]
    assert ids == [ex.id for ex in get_set(path.stem).exercises]


def test_exercise_ids_are_unique_across_the_course():
    ids = [ex.id for s in all_sets() for ex in s.exercises]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("exercise_set", all_sets(), ids=lambda s: s.name)
def test_public_expected_outputs_equal_the_reference(exercise_set):
    reference = load_reference(exercise_set.name, ROOT / "solutions")
    for ex in exercise_set.exercises:
        assert ex.public, f"{ex.id} has no public case"
        for case in ex.public:
            got = decode(encode(ex.call(reference[ex.id], *copy.deepcopy(case.args))))
            ok, why = same(case.expected, got, ex.rtol, ex.atol)
            assert ok, (
                f"{ex.id}{case.args}: stored expected output differs from the reference: {why}"
            )


@pytest.mark.parametrize("exercise_set", all_sets(), ids=lambda s: s.name)
def test_grading_inputs_are_reproducible_and_run_on_the_reference(exercise_set):
    import random

    reference = load_reference(exercise_set.name, ROOT / "solutions")
    for ex in exercise_set.exercises:
        a, b = ex.grading(random.Random("7:alice")), ex.grading(random.Random("7:alice"))
        assert encode(a) == encode(b)
        assert encode(a) != encode(ex.grading(random.Random("7:bob")))  # per-student inputs differ
        assert len(a) == ex.n_grading() >= 5
        for args in a:
            encode(
                ex.call(reference[ex.id], *copy.deepcopy(args))
            )  # the reference handles every input


def test_strip_solutions_keeps_signature_and_indentation():
    src = '# EXERCISE: f\ndef f(x: int) -> int:\n    """Doc."""\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n'
    assert strip_solutions(src) == (
        '# EXERCISE: f\ndef f(x: int) -> int:\n    """Doc."""\n'
        "    raise NotImplementedError  # your code here\n"
    )
    with pytest.raises(AuthoringError, match="never closed"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(AuthoringError, match="without"):
        strip_solutions("x = 1\n### END SOLUTION\n")


def _nb(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_authoring_rules_are_enforced():
    good = "# EXERCISE: f\ndef f(x: int) -> int:\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"
    assert [i for i, _ in exercise_cells(_nb(good, 'check("f", f)'))] == ["f"]
    with pytest.raises(AuthoringError, match="next code cell"):
        exercise_cells(_nb(good, "print(1)"))
    with pytest.raises(AuthoringError, match="named g"):
        exercise_cells(_nb(good.replace("EXERCISE: f", "EXERCISE: g"), 'check("g", f)'))
    with pytest.raises(AuthoringError, match="does not start"):
        exercise_cells(_nb("x = 1\n### BEGIN SOLUTION\n### END SOLUTION"))


def test_cli_make_exercises(tmp_path):
    out = tmp_path / "exercises"

    def cli(*extra: str) -> int:
        return main(["make-exercises", "--solutions", str(ROOT / "solutions"), "--exercises", str(out), *extra])

    assert cli() == 0
    assert cli("--check") == 0
    for p in SOLUTIONS:
        assert (out / p.name).read_text(encoding="utf-8") == (
            ROOT / "exercises" / p.name
        ).read_text(encoding="utf-8")
    (out / SOLUTIONS[0].name).write_text("{}")
    assert cli("--check") == 1
    assert make_exercises(ROOT / "solutions", out) == [out / SOLUTIONS[0].name]


def test_reference_solutions_are_not_in_the_installed_library():
    """No answer block of solutions/ appears in the library's source (as a block of consecutive lines)."""
    import re

    import minilm

    lib = Path(minilm.__file__).parent
    text = re.sub(r"\s+", " ", "\n".join(f.read_text(encoding="utf-8") for f in lib.rglob("*.py")))
    blocks = [
        " ".join(solution_lines(src))
        for p in SOLUTIONS
        for _, src in exercise_cells(read_notebook(p))
    ]
    assert blocks and not [b for b in blocks if re.sub(r"\s+", " ", b) in text]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_checks_pass_on_solutions_and_say_not_attempted_on_exercises(path, capsys):
    from minilm.grading import check

    reference = load_reference(path.stem, ROOT / "solutions")
    stubs: dict = {}
    for cell in read_notebook(ROOT / "exercises" / path.name).cells:
        if cell.cell_type == "code" and exercise_id(cell.source):
            exec(compile(cell.source, str(path), "exec"), stubs)  # noqa: S102 - generated stubs
    for ex in get_set(path.stem).exercises:
        check(ex.id, reference[ex.id])
        out = capsys.readouterr().out
        n = len(ex.public)
        assert f"{ex.id}: {n} of {n} public cases passed" in out, out
        check(ex.id, stubs[ex.id])
        assert "not attempted yet" in capsys.readouterr().out
