"""benchmarks/generation.py --quick runs end to end and prints every figure with its target (seconds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generation_benchmark_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("generation_benchmark", ROOT / "benchmarks" / "generation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out_json = tmp_path / "figures.json"
    assert module.main(["--quick", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    for text in ("KV-cache speed-up", "target >= 5.0x", "int8 times smaller", "target >= 3.5x",
                 "int8 val loss - fp32", "int4 times smaller", "target >= 5.0x"):
        assert text in out, out
    assert "Hugging Face" in out and ("ratio" in out.split("Hugging Face")[1] or "skipped" in out)
    figures = json.loads(out_json.read_text())["figures"]
    names = {f["name"] for f in figures}
    assert {"KV-cache speed-up", "int8 times smaller", "int4 times smaller", "int8 val loss - fp32"} <= names
    speedup = next(f for f in figures if f["name"] == "KV-cache speed-up")
    assert speedup["value"] > 0 and speedup["target"] == ">= 5.0x" and speedup["ratio"] == speedup["value"]
