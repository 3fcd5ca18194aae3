"""environment.yml (conda) stays in step with pyproject.toml: same packages, same specifiers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def parse_environment_yml(text: str) -> dict:
    """Parse the YAML subset environment.yml uses: name, channels, dependencies, a pip list."""
    out: dict = {"name": None, "channels": [], "dependencies": [], "pip": []}
    section = None
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if indent == 0:
            key, _, value = item.partition(":")
            section = key.strip()
            if section == "name":
                out["name"] = value.strip()
            continue
        if not item.startswith("- "):
            raise ValueError(f"unexpected line in environment.yml: {raw!r}")
        value = item[2:].strip().strip("\"'")
        if section == "dependencies" and value == "pip:":
            section = "pip"
            continue
        if section == "pip" and indent <= 2:  # back at the level of the conda dependencies
            section = "dependencies"
        out[section].append(value)
    return out


@pytest.fixture(scope="module")
def env() -> dict:
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    parsed = parse_environment_yml(text)
    try:
        import yaml
    except ImportError:  # the subset parser alone
        return parsed
    full = yaml.safe_load(text)  # cross-check the subset parser where PyYAML is installed
    conda = [d for d in full["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in full["dependencies"] if isinstance(d, dict))
    assert (full["name"], conda, pip) == (parsed["name"], parsed["dependencies"], parsed["pip"])
    return parsed


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def by_name(reqs: list[str]) -> dict[str, Requirement]:
    out: dict[str, Requirement] = {}
    for r in reqs:
        req = Requirement(r)
        name = canonicalize_name(req.name)
        assert name not in out, f"{req.name} is listed twice"
        out[name] = req
    return out


def test_environment_is_named_minilm(env):
    assert env["name"] == "minilm"


def test_python_and_pip(env, project):
    conda = {re.split(r"[<>=!~ ]", d)[0]: d for d in env["dependencies"]}
    assert "pip" in conda
    assert SpecifierSet(conda["python"][len("python") :]) == SpecifierSet(
        project["requires-python"]
    )


def test_pip_list_equals_pyproject_dependencies_and_extras(env, project):
    wanted = list(project["dependencies"])
    for reqs in project.get("optional-dependencies", {}).values():
        wanted += reqs
    pip = [r for r in env["pip"] if r != "-e ."]
    assert "-e ." in env["pip"], "environment.yml must install this checkout (-e .)"
    mine, theirs = by_name(pip), by_name(wanted)
    assert sorted(mine) == sorted(theirs), (
        f"only in environment.yml: {sorted(set(mine) - set(theirs))}; "
        f"only in pyproject.toml: {sorted(set(theirs) - set(mine))}"
    )
    for name in theirs:
        assert mine[name].specifier == theirs[name].specifier, (
            f"{name}: {mine[name]} vs {theirs[name]}"
        )
        assert (
            mine[name].extras == theirs[name].extras and mine[name].marker == theirs[name].marker
        ), name


def test_torch_is_never_pinned_from_above(project):
    # Colab (or any machine with a suitable CUDA build) must keep its own torch.
    torch = by_name(project["dependencies"])["torch"]
    assert all(s.operator in (">=", ">") for s in torch.specifier), str(torch)


def test_subset_parser_sees_a_drift():
    text = (
        'name: minilm\ndependencies:\n  - python>=3.10\n  - pip\n  - pip:\n'
        '      - "numpy>=1.20"\n      - -e .\n'
    )
    parsed = parse_environment_yml(text)
    assert parsed["pip"] == ["numpy>=1.20", "-e ."]
    assert (
        by_name(["numpy>=1.20"])["numpy"].specifier != by_name(["numpy>=1.24"])["numpy"].specifier
    )
