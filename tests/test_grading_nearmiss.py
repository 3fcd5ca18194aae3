"""Every known near-miss answer (tests/grading_nearmiss.py) fails check()'s public cases, and fails the
grader's drawn cases for every one of 1,000 simulated students (seeds), so no near-miss scores by luck.

A near-miss fails a case when it raises, changes an argument the exercise may not change, returns
something that is not plain data, or returns a value `same()` tells from the reference solution's.
The drawn cases alone must catch it (the grader also reruns the public ones): so the grading inputs
are at least as strong as the public cases, on every seed.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
from grading_nearmiss import NEAR_MISSES

from minilm.grading.authoring import load_reference
from minilm.grading.checker import changed_argument
from minilm.grading.compare import NotData, decode, encode, same
from minilm.grading.sets import SET_MODULES, get_set

ROOT = Path(__file__).resolve().parents[1]
SETS = [get_set(name) for name in SET_MODULES if name[:2] <= "08"]  # the sets issue 22 covers
EXERCISES = [(s.name, ex) for s in SETS for ex in s.exercises]
STUDENTS = 1000
# near-misses such as an unbiased variance of one value warn as they fail: that is their point
pytestmark = pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")


def fresh(x):
    """A copy of an argument an answer may change (tensors cloned, containers rebuilt): deepcopy's
    work at a fraction of its cost, since grading inputs hold only plain data."""
    if isinstance(x, torch.Tensor):
        return x.clone()
    if type(x) in (list, tuple):
        return type(x)(fresh(v) for v in x)
    if type(x) is dict:
        return {k: fresh(v) for k, v in x.items()}
    return x


def unchanged(before, after) -> bool:
    """Fast path of checker.changed_argument: equal tensors (same dtype and shape) and equal data."""
    if isinstance(before, torch.Tensor):
        return before.dtype == after.dtype and before.shape == after.shape and torch.equal(before, after)
    if type(before) in (list, tuple):
        return type(after) is type(before) and len(before) == len(after) and all(map(unchanged, before, after))
    if type(before) is dict:
        return type(after) is dict and list(before) == list(after) and all(unchanged(before[k], after[k]) for k in before)
    return type(before) is type(after) and before == after


def fails(ex, fn, args, expected) -> bool:
    """True when `fn` does not pass this case as the grader judges it (the grader's own checks:
    an error, a changed argument, a value that is not plain data or that `same` tells apart)."""
    given = fresh(args)
    try:
        got = ex.call(fn, *given)
        got = got if type(got) is torch.Tensor else decode(encode(got))  # a tensor compares as it is
    except (Exception, NotData):  # noqa: BLE001 - any error fails the case
        return True
    if not unchanged(args, given) and changed_argument(args, given, ex.may_modify):
        return True
    return not same(expected, got, ex.rtol, ex.atol, ordered_keys=ex.ordered_keys)[0]


def test_every_exercise_of_sets_01_to_08_has_near_misses_and_a_stub():
    ids = [ex.id for _, ex in EXERCISES]
    assert sorted(NEAR_MISSES) == sorted(ids)
    for ex_id in ids:
        assert len(NEAR_MISSES[ex_id]) >= 3 and "stub" in NEAR_MISSES[ex_id], ex_id


@pytest.mark.parametrize("set_name, ex", EXERCISES, ids=[ex.id for _, ex in EXERCISES])
def test_public_cases_catch_every_near_miss(set_name, ex):
    """check() is as strong as the grader: each near-miss fails at least one public case."""
    passing = [name for name, fn in NEAR_MISSES[ex.id].items()
               if not any(fails(ex, fn, case.args, case.expected) for case in ex.public)]
    assert not passing, f"{ex.id}: these near-misses pass every public case: {passing}"


@pytest.mark.parametrize("set_name, ex", EXERCISES, ids=[ex.id for _, ex in EXERCISES])
def test_each_near_miss_runs_to_an_answer(set_name, ex):
    """A near-miss is caught for its mistake, not for a bug of its own: each one returns a value
    (without raising) on some public or drawn case."""
    cases = [c.args for c in ex.public] + ex.draw(random.Random(f"runs:{ex.id}"))
    for name, fn in NEAR_MISSES[ex.id].items():
        answered = 0
        for args in cases:
            try:
                ex.call(fn, *fresh(args))
                answered += 1
            except Exception:  # noqa: BLE001, S112 - some near-misses raise on some inputs
                continue
        assert answered, f"{ex.id}.{name} raises on every case: a bug in the near-miss itself"


def test_the_reference_passes_its_own_cases():
    """The judge `fails` is not trivially true: the reference passes every public and drawn case."""
    for s in SETS:
        reference = load_reference(s.name, ROOT / "solutions")
        for ex in s.exercises:
            for case in ex.public:
                assert not fails(ex, reference[ex.id], case.args, case.expected), ex.id
            for args in ex.draw(random.Random(f"judge:{ex.id}")):
                want = decode(encode(ex.call(reference[ex.id], *copy.deepcopy(args))))
                assert not fails(ex, reference[ex.id], args, want), ex.id


@pytest.mark.slow  # about 55 s of one core for the eight sets
@pytest.mark.parametrize("exercise_set", SETS, ids=[s.name for s in SETS])
def test_drawn_cases_catch_every_near_miss_for_every_student(exercise_set):
    """1,000 simulated students per exercise: on each, the drawn cases catch every near-miss. The
    reference runs only on the cases needed (a near-miss is usually caught by its first case or two)."""
    reference = load_reference(exercise_set.name, ROOT / "solutions")
    escaped: dict[str, list[str]] = {}
    for ex in exercise_set.exercises:
        ref, n_cases = reference[ex.id], ex.n_drawn()
        catcher = dict.fromkeys(NEAR_MISSES[ex.id], 0)  # the case that caught each one last: tried first
        for student in range(STUDENTS):
            cases = ex.draw(random.Random(f"nearmiss:{student}:{ex.id}"))
            expected: dict[int, object] = {}
            for name, fn in NEAR_MISSES[ex.id].items():
                for i in [catcher[name], *range(n_cases)]:
                    if i not in expected:
                        expected[i] = decode(encode(ex.call(ref, *copy.deepcopy(cases[i]))))
                    if fails(ex, fn, cases[i], expected[i]):
                        catcher[name] = i
                        break
                else:
                    escaped.setdefault(f"{ex.id}.{name}", []).append(str(student))
    report = {k: f"{len(v)} students, e.g. seed nearmiss:{v[0]}" for k, v in escaped.items()}
    assert not escaped, f"near-misses that pass every drawn case for some students: {report}"
