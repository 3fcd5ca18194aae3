"""The ladder benchmark: MLP, RNN and LSTM on names.txt against makemore's figures, and a char LSTM
on tinyshakespeare (val loss against wall time).

    MINILM_DATA_DIR=../shared/data python benchmarks/ladder.py            # full: 5,000 steps each
    MINILM_DATA_DIR=../shared/data python benchmarks/ladder.py --quick    # sanity run, ~1 min

Setup (makemore's): names.txt, a seeded permutation holds out 1,000 names as the test set;
each name is `. c1 ... cn .` in a row of 16 tokens (targets -1 after the end); batch 32,
5,000 AdamW steps, embedding 64, hidden 64. Test loss = mean NLL per character over the
whole test set. References were measured by makemore on a 2-core CPU; timings here are only
comparable on a quiet machine of the same kind.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace

import torch

import minilm
from minilm.data.batching import batch_fn, char_data
from minilm.data.names import dataset_loss, load_names, row_sampler
from minilm.models import LSTM, MLP, RNN, LSTMConfig, MLPConfig, RNNConfig
from minilm.training.loop import TrainConfig, train

# name: (model class, config class, test-loss reference, target, reference ms/step, reference model)
LADDER = {
    "mlp": (MLP, MLPConfig, 2.0865, 2.08, 4.4, "makemore MLP"),
    "rnn": (RNN, RNNConfig, 2.1138, 2.11, 3.2, "makemore RNN"),
    "lstm": (LSTM, LSTMConfig, 2.0755, 2.07, 7.2, "makemore GRU"),
}
# one recipe for all three, tuned on this setup: makemore's AdamW (wd 0.01, betas (0.9, 0.99),
# eps 1e-8) with lr 1e-2, 100 warmup steps and cosine decay to 1e-4 instead of a constant 5e-4
NAMES_TRAIN = TrainConfig(max_steps=5000, learning_rate=1e-2, min_lr=1e-4, warmup_steps=100,
                          weight_decay=0.01, betas=(0.9, 0.99), eps=1e-8, grad_clip=1.0,
                          eval_interval=1000, eval_iters=20, progress=False)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def run_names(name: str, steps: int, lr: float | None, device: torch.device) -> dict:
    """Train one rung on names and measure test loss, ms/step and peak RSS."""
    model_cls, config_cls, *_ = LADDER[name]
    train_set, test_set = load_names(block_size=16)
    minilm.set_seed(3407)
    model = model_cls(config_cls(vocab_size=train_set.tokenizer.vocab_size, block_size=16,
                                 n_embd=64, n_hidden=64))
    g = torch.Generator().manual_seed(3407)
    samplers = {"train": row_sampler(train_set, 32, device, g), "val": row_sampler(test_set, 32, device, g)}
    cfg = replace(NAMES_TRAIN, max_steps=steps, eval_interval=steps,
                  learning_rate=lr if lr is not None else NAMES_TRAIN.learning_rate)
    history = train(model, lambda split: samplers[split](), cfg, device, generator=g)
    return {
        "test_loss": dataset_loss(model, test_set, device=device),
        "train_loss": dataset_loss(model, train_set, device=device),
        "ms_per_step": 1000 * history.wall_time[-1] / steps,
        "params": sum(p.numel() for p in model.parameters()),
        "rss_mb": peak_rss_mb(),
    }


def run_shakespeare(steps: int, device: torch.device) -> None:
    """The char LSTM of notebook 03 (cpu preset sizes): val loss against wall time."""
    tok, train_data, val_data = char_data("tinyshakespeare")
    minilm.set_seed(1337)
    model = LSTM(LSTMConfig(vocab_size=tok.vocab_size, block_size=64, n_embd=64, n_hidden=256))
    get, g = batch_fn(train_data, val_data, 64, 32, device, seed=1337)
    cfg = TrainConfig(max_steps=steps, learning_rate=5e-3, min_lr=5e-4, warmup_steps=50,
                      eval_interval=max(1, steps // 10), eval_iters=20, progress=False)
    history = train(model, get, cfg, device, generator=g)
    print(f"\ntinyshakespeare char LSTM (block 64, embd 64, hidden 256, batch 32, {steps} steps, "
          f"{sum(p.numel() for p in model.parameters()):,} params)")
    print(f"{'step':>6} {'wall s':>8} {'train':>7} {'val':>7}")
    for s, w, tr, va in zip(history.steps, history.wall_time, history.train_loss, history.val_loss):
        print(f"{s:>6} {w:>8.1f} {tr:>7.4f} {va:>7.4f}")
    print(f"peak RSS {peak_rss_mb():.0f} MB (target < 2048)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 steps each: a sanity run")
    parser.add_argument("--models", default="mlp,rnn,lstm", help="comma-separated subset")
    parser.add_argument("--steps", type=int, default=None, help="override the 5,000 names steps")
    parser.add_argument("--lr", type=float, default=None, help="override the learning rate")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--no-shakespeare", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = minilm.get_device()
    steps = args.steps or (300 if args.quick else 5000)
    print(f"names: batch 32, {steps} AdamW steps, context 16, embedding 64, hidden 64, "
          f"{torch.get_num_threads()} threads")
    print(f"{'model':<6} {'params':>7} {'test loss':>9} {'ref':>7} {'target':>7} {'ok':>3} "
          f"{'ms/step':>8} {'ref':>5} {'peak RSS MB':>12}  reference")
    for name in args.models.split(","):
        _, _, ref, target, ref_ms, ref_name = LADDER[name]
        t0 = time.perf_counter()
        r = run_names(name, steps, args.lr, device)
        ok = "yes" if r["test_loss"] <= target else "NO"
        print(f"{name:<6} {r['params']:>7,} {r['test_loss']:>9.4f} {ref:>7.4f} {target:>7.2f} {ok:>3} "
              f"{r['ms_per_step']:>8.2f} {ref_ms:>5.1f} {r['rss_mb']:>12.0f}  {ref_name} "
              f"(train loss {r['train_loss']:.4f}, {time.perf_counter() - t0:.0f} s)", flush=True)
    if not args.no_shakespeare:
        run_shakespeare(200 if args.quick else 2000, device)


if __name__ == "__main__":
    main()
