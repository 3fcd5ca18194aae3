"""Exercise specs: the public cases a student's `check()` runs and the grading inputs the batch grader draws.

A spec holds no answer. Reference solutions live only in `solutions/NN_topic.ipynb`; the expected
outputs of public cases are stored here as data (tests/test_grading_authoring.py proves they equal
the reference's outputs). See docs/instructors.md, "Authoring an exercise".
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RECIPE = "_minilm_recipe"  # attribute of a tensor made by seeded(): how feedback shows it
_RNG_LOCK = threading.Lock()  # the grader draws inputs in several threads; torch's RNG is global


def call_function(obj: Callable[..., Any], *args: Any) -> Any:
    """Default way to run an exercise: call the student's function with the case's arguments."""
    return obj(*args)


@dataclass(frozen=True)
class Case:
    """One public case: the arguments and the expected (reference) output, as plain data."""

    args: tuple  # positional arguments passed to the exercise
    expected: (
        Any  # what the reference solution returns for them (a plain value, list, dict, tensor)
    )
    note: str = ""  # shown to the student, e.g. "empty text"


@dataclass(frozen=True)
class Exercise:
    """One graded function or class: its id is the name the answer cell defines."""

    id: str  # the exercise id == the name of the function/class the student writes
    points: float  # points for passing every grading case (all or nothing)
    public: tuple[Case, ...]  # cases `check()` runs in the student's notebook
    draw: Callable[[random.Random], list[tuple]]  # rng -> argument tuples drawn fresh at grading time
    describe_grading: str = ""  # what the drawn cases cover, told to students by check()
    call: Callable[..., Any] = call_function  # (student object, *args) -> value to compare
    # dotted names of callables the answer may not use while it is checked or graded: the
    # library's twin of the exercise and the PyTorch function it reimplements, e.g.
    # ("minilm.models.attention.explicit_attention", "torch.nn.functional.scaled_dot_product_attention").
    # A module stands for everything defined in it, a class for constructing it and its methods
    # (minilm.grading.forbid; docs/instructors.md, "Authoring an exercise").
    forbidden: tuple[str, ...] = ()
    rtol: float = 1e-5  # relative tolerance for floats and floating tensors (see the TOL_* below)
    atol: float = 1e-6  # absolute tolerance for floats and floating tensors
    may_modify: tuple[int, ...] = ()  # 0-based positions of arguments it may change in place
    ordered_keys: bool = False  # dicts in the result must list their keys in the reference's order
    show_call: str = ""  # how feedback writes a call, e.g. "CharTokenizer({0}).encode({1})"

    def grading(self, rng: random.Random) -> list[tuple]:
        """Every argument tuple the grader runs: the public cases' (so an answer that fails check()
        never scores) and then the ones drawn from `rng`; the grader compares each against the
        reference solution's output on it."""
        return [case.args for case in self.public] + self.draw(rng)

    def n_drawn(self) -> int:
        """How many fresh cases the grader draws (the count is the same for every seed)."""
        return len(self.draw(random.Random(0)))

    def n_grading(self) -> int:
        """How many cases the grader runs: the public ones and the drawn ones."""
        return len(self.public) + self.n_drawn()


# The tolerances the sets use, by what the answer is (Exercise(..., **TOL_FLOAT32_SUMS)).
TOL_EXACT = {"rtol": 0.0, "atol": 0.0}  # reshaping, indexing, counting: no arithmetic at all
TOL_DEFAULT = {"rtol": 1e-5, "atol": 1e-6}  # the documented default; a float32 0.6 for 0.6 passes
TOL_FLOAT32_SUMS = {"rtol": 1e-4, "atol": 1e-5}  # float32 sums and products taken in another order
TOL_SMALL_VALUES = {"rtol": 1e-5, "atol": 1e-9}  # floats far below 1 (learning rates, utilisation)


@dataclass(frozen=True)
class ExerciseSet:
    """The exercises of one notebook in solutions/ (same name: `solutions/<name>.ipynb`)."""

    name: str  # e.g. "01_text_tokens", the stem of the solutions and exercises notebook
    exercises: tuple[Exercise, ...] = field(default_factory=tuple)  # in notebook order

    def get(self, exercise_id: str) -> Exercise:
        """The exercise with this id (KeyError with the known ids otherwise)."""
        for ex in self.exercises:
            if ex.id == exercise_id:
                return ex
        raise KeyError(
            f"set {self.name} has no exercise {exercise_id!r}; it has "
            f"{', '.join(e.id for e in self.exercises)}"
        )

    @property
    def max_points(self) -> float:
        """Sum of the points of every exercise."""
        return sum(ex.points for ex in self.exercises)


@functools.lru_cache(maxsize=4096)
def _compiled(code: str) -> Any:
    return compile(code, "<grading input>", "eval")


def seeded(rng: random.Random, code: str) -> Any:
    """The tensor that the PyTorch expression `code` (e.g. "torch.randn(2, 3) * 5.0") gives right
    after torch.manual_seed(s), with s drawn from `rng`; feedback shows it as exactly that, so a
    student can paste the failing case. Use it for every random tensor of a grading input."""
    import torch

    seed = rng.randrange(1_000_000)
    cpu = torch.default_generator  # what torch.manual_seed seeds for CPU tensors, without its GPU
    with _RNG_LOCK:  # back ends (which cost 70 times as much); the global state is restored after
        state = cpu.get_state()
        try:
            cpu.manual_seed(seed)
            tensor = eval(_compiled(code), {"torch": torch})
        finally:
            cpu.set_state(state)
    setattr(tensor, RECIPE, (seed, code))
    return tensor
