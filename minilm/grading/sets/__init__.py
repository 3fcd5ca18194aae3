"""Registry of exercise sets: one module per set, named after its notebook (see docs/instructors.md)."""

from __future__ import annotations

import importlib

from ..spec import Exercise, ExerciseSet

# set name -> module (in this package) that defines SET. Add a line here for a new set.
SET_MODULES = {
    "01_text_tokens": "s01_text_tokens",
    "02_bigram_mlp": "s02_bigram_mlp",
    "03_rnn_lstm": "s03_rnn_lstm",
    "04_attention": "s04_attention",
    "05_pretraining": "s05_pretraining",
    "06_generation": "s06_generation",
    "07_fine_tuning": "s07_fine_tuning",
    "08_bias": "s08_bias",
    "09_assistant": "s09_assistant",
}


def get_set(name: str) -> ExerciseSet:
    """The set named `name`; `"01"` is accepted for `"01_text_tokens"`."""
    matches = [full for full in SET_MODULES if full == name or full.split("_", 1)[0] == name]
    if len(matches) != 1:
        raise KeyError(f"unknown exercise set {name!r}; known sets: {', '.join(SET_MODULES)}")
    module = importlib.import_module(f".{SET_MODULES[matches[0]]}", __name__)
    return module.SET


def all_sets() -> list[ExerciseSet]:
    """Every registered set, in course order."""
    return [get_set(name) for name in SET_MODULES]


def find_exercise(exercise_id: str) -> Exercise:
    """The exercise with this id in any set (ids are unique across the course)."""
    for s in all_sets():
        for ex in s.exercises:
            if ex.id == exercise_id:
                return ex
    known = ", ".join(ex.id for s in all_sets() for ex in s.exercises)
    raise KeyError(f"no exercise {exercise_id!r}; known exercises: {known}")
