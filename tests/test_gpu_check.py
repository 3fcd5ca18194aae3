"""benchmarks/gpu.sh, the one GPU check, runs end to end on the CPU in its shrunk form (--tiny), so that the
one run on a GPU machine does not fail on a typo; and MFU's datasheet peaks are looked up by GPU name."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def benchmark_module(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))  # gpu_check imports gpt from beside it
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_datasheet_peaks_by_device_name():
    peak = benchmark_module("gpt").spec_peak
    assert peak("NVIDIA A100-SXM4-80GB") == 312e12 and peak("NVIDIA A100 80GB PCIe") == 312e12
    assert peak("NVIDIA H100 80GB HBM3") == 989e12 and peak("NVIDIA H100 PCIe") == 756e12
    assert peak("NVIDIA H200") == 989e12 and peak("NVIDIA L4") == 121e12 and peak("Tesla T4") == 65e12
    assert peak("NVIDIA L40S") is None and peak("NVIDIA GeForce RTX 3090") is None


def test_gpu_sh_runs_end_to_end_on_the_cpu_when_shrunk(tmp_path):
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--tiny", str(tmp_path)], cwd=ROOT, text=True, check=False,
                          capture_output=True, timeout=900,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in tmp_path.glob("*.log"))
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = {s["step"]: s for s in result["steps"]}
    assert all(steps[name]["rc"] == 0 for name in ("gpt", "prepare", "pretrain", "ddp")), steps
    for name in ("generation", "finetune"):  # other issues' scripts: run when present, else a stated skip
        assert steps[name].get("rc") == 0 or "skipped" in steps[name], steps[name]
        assert (steps[name].get("rc") == 0) == (result[name] is not None)
    gpt = result["gpt"]
    assert gpt["tiny"] and gpt["steps_run"] == 20 and gpt["tokens_per_s"] > 0 and 0 < gpt["mfu_measured"] < 1
    assert gpt["final_val_loss"] < gpt["history"]["val_loss"][0]
    one, two = result["pretrain"], result["ddp"]
    assert (one["status"], one["world_size"], two["status"], two["world_size"]) == ("finished", 1, "finished", 2)
    assert abs(one["val_loss"] - two["val_loss"]) < 1e-4  # the same global batches, one process or two
    assert "tokens/s (all processes)" in proc.stdout and "gpu.sh:" in proc.stdout
