"""The one setup cell every notebook starts with, and the one place the install source is defined.

tests/test_notebook_hygiene.py proves each notebook's first code cell
is exactly SETUP_CELL. On Colab it installs minilm from INSTALL_SOURCE; elsewhere it does nothing.
"""

INSTALL_SOURCE = "git+https://github.com/minilm-course/minilm.git"

SETUP_CELL = f'''# Setup (the same in every notebook): installs minilm on Colab, does nothing elsewhere.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("minilm") is None:
    source = os.environ.get("MINILM_INSTALL_SOURCE", "{INSTALL_SOURCE}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)
import minilm'''
