"""Exercises and grading: `check()` for students; the exercise generator and batch grader for teachers.

Students: `from minilm.grading import check`, then `check("<id>", fn)` after each exercise.
Teachers: `minilm make-exercises`, `minilm grade <set> <folder> --out <dir>` (docs/instructors.md).
"""

from .checker import check
from .spec import Case, Exercise, ExerciseSet

__all__ = ["Case", "Exercise", "ExerciseSet", "check"]
