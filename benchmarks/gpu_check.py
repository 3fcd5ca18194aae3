"""The summary of benchmarks/gpu.sh: every step's figures in one JSON file, and a table beside the targets.

    python benchmarks/gpu_check.py FOLDER     # reads FOLDER/steps.jsonl and the steps' files; writes gpu_check.json

A pretrain step's figures come from its run.json, or, when its time limit stopped it (the loop then
saves a checkpoint), from that checkpoint's history, marked "stopped". Tokens/s are the whole group's
training tokens over training seconds (evaluation excluded); MFU is against the datasheet peak of
every GPU in the group (benchmarks/gpt.py PEAK_FLOPS).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch
from gpt import spec_peak  # benchmarks/gpt.py, beside this script

from minilm.models.gpt import GPT, GPTConfig, flops_per_token
from minilm.training.checkpoint import load_checkpoint


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def environment() -> dict:
    """Versions and the device the figures were taken on."""
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine()
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "device": name, "gpus": torch.cuda.device_count() if cuda else 0,
            "gpu_memory_gb": torch.cuda.get_device_properties(0).total_memory / 1e9 if cuda else None,
            "datasheet_peak_flops": spec_peak(name) if cuda else None}


def pretrain_figures(folder: Path, peak: float | None) -> dict | None:
    """Steps, val loss, tokens/s and MFU of a `minilm pretrain` output folder (finished or stopped)."""
    run = read_json(folder / "run.json")
    if run is not None:
        history, model, train, batch, world = (run["history"], run["model"], run["train"], run["batch_size"],
                                               run["world_size"])
        status = "finished"
    elif (folder / "checkpoints" / "pretrain.pt").is_file():
        ckpt = load_checkpoint(folder / "checkpoints" / "pretrain.pt")
        history, model, train = ckpt["history"], ckpt["config"], ckpt["train_config"]
        batch, world = None, (ckpt.get("extra") or {}).get("world_size", 1)
        status = f"stopped at step {ckpt['step']}"
    else:
        return None
    steps, seconds = history["steps"][-1], history["wall_time"][-1]
    figures = {"status": status, "world_size": world, "steps": steps, "val_loss": history["val_loss"][-1],
               "train_seconds": seconds}
    if batch is not None and seconds > 0:
        tps = steps * train["grad_accum_steps"] * batch * model["block_size"] / seconds
        n_params = GPT(GPTConfig(**model)).num_params()
        figures.update(tokens_per_s=tps, params=n_params,
                       mfu_datasheet=flops_per_token(GPTConfig(**model), n_params) * tps / (peak * world)
                       if peak else None)
    return figures


def main(folder: Path) -> int:
    """Gather FOLDER's figures into FOLDER/gpu_check.json and print them beside the targets."""
    steps = [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines() if line.strip()]
    env = environment()
    result = {"environment": env, "steps": steps, "gpt": read_json(folder / "gpt.json"),
              "pretrain": pretrain_figures(folder / "pretrain", env["datasheet_peak_flops"]),
              "ddp": pretrain_figures(folder / "ddp", env["datasheet_peak_flops"]),
              "generation": read_json(folder / "generation.json"),
              "finetune": read_json(folder / "finetune.json")}
    (folder / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")

    print(f"device {env['device']} x{max(env['gpus'], 1)}, torch {env['torch']}, CUDA {env['cuda']}")
    for s in steps:
        state = s.get("skipped") and f"skipped: {s['skipped']}" or (
            "ok" if s["rc"] == 0 else f"exit {s['rc']}" + (" (time limit)" if s["rc"] in (124, 130, 137) else ""))
        print(f"  {s['step']:<11} {state}" + (f", {s['seconds']} s of {s['limit']}" if "rc" in s else ""))
    g = result["gpt"] or {}

    def show(name: str, value, target: str = "-") -> None:
        print(f"  {name:<34} {value!s:>22}   {target}")

    def num(v, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    print("gpu preset on tinyshakespeare (benchmarks/gpt.py --only gpu):")
    if g.get("skipped") or not g:
        show("figures", g.get("skipped", "none: see gpt.log"))
    else:
        show("steps run", f"{g['steps_run']} of {g['steps_planned']}")
        show("final val loss", num(g["final_val_loss"], ".4f"), "<= 1.47 (nanoGPT, A100: 1.4697)")
        show("time to val 1.47 (training s)", num(g["time_to_val_1.47_s"], ".0f"), "about 180 (nanoGPT, A100)")
        show("tokens/s", num(g["tokens_per_s"], ",.0f"))
        show("MFU of the datasheet peak", num(g["mfu_datasheet"], ".1%"))
        show("MFU of the measured matmul peak", num(g["mfu_measured"], ".1%"))
        show("peak GPU memory (GB)", num(g["peak_gpu_memory_gb"], ".2f"), "< 8 (a Colab T4 has 15)")
    for key in ("pretrain", "ddp"):
        f = result[key]
        print(f"minilm pretrain, {key}:" + ("" if f else " no figures (see its log)"))
        if f:
            show("status", f["status"])
            show("processes", f["world_size"])
            show("val loss at the last estimate", num(f["val_loss"], ".4f"))
            show("tokens/s (all processes)", num(f.get("tokens_per_s"), ",.0f"))
            show("MFU of the datasheet peak", num(f.get("mfu_datasheet"), ".1%"))
    for key in ("generation", "finetune"):
        print(f"benchmarks/{key}.py: " + ("see gpu_check.json" if result[key] else "no figures"))
    failed = [s["step"] for s in steps if s.get("rc", 0) != 0]
    print(f"figures in {folder / 'gpu_check.json'}" + (f"; steps that failed: {failed}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
