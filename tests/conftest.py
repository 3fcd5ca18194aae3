"""Shared pytest settings: the grading corpus holds hostile notebooks that only the grader may run."""

collect_ignore_glob = ["grading_corpus/*"]
