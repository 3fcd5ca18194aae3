"""Fine-tuning (minilm.finetune): the fixed split, padding and pooling, the training contract, clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minilm import finetune as ft
from minilm.data.tokenizers import BPETokenizer, CharTokenizer
from minilm.models.gpt import GPT, GPTConfig
from minilm.training.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def split():
    return ft.rt_polarity_split()


def test_split_is_fixed_and_disjoint(split):
    assert {k: len(v) for k, v in split.items()} == {"train": 8480, "val": 1135, "test": 1047}
    sets = {k: set(v.texts) for k, v in split.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert all(len(sets[k]) == len(split[k]) for k in split)  # no duplicates inside a part either
    digest = hashlib.sha256("\n".join(split["test"].texts).encode()).hexdigest()[:12]
    again = ft.rt_polarity_split()
    assert again["test"].texts == split["test"].texts and again["train"].labels == split["train"].labels
    assert hashlib.sha256("\n".join(again["test"].texts).encode()).hexdigest()[:12] == digest
    for part in split.values():  # both classes in every part, roughly balanced
        assert 0.45 < sum(part.labels) / len(part) < 0.55


def test_split_does_not_depend_on_order():
    full = ft.Split([f"text {i}" for i in range(300)], [i % 2 for i in range(300)])
    shuffled = ft.Split(full.texts[::-1], full.labels[::-1])
    a, b = ft.make_split(full), ft.make_split(shuffled)
    assert set(a["test"].texts) == set(b["test"].texts)


def test_subsample_is_balanced_and_seeded(split):
    s = ft.subsample(split["train"], 100, seed=0)
    assert len(s) == 100 and sum(s.labels) == 50
    assert s.texts == ft.subsample(split["train"], 100, seed=0).texts
    assert set(s.texts) <= set(split["train"].texts)


def tiny(vocab: int = 40, block: int = 12) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=2, n_head=2, n_embd=16)).eval()


def test_encode_pads_once_and_truncates():
    tok = CharTokenizer.from_text("abcdefgh ")
    X = ft.encode_texts(["abc", "a", "abcdefgh abcdefgh"], tok, block_size=8)
    assert X.shape == (3, 8)
    assert X[0, 3:].eq(ft.PAD).all() and X[1, 1:].eq(ft.PAD).all() and X[2].ge(0).all()
    assert ft.encode_texts(["ab", "a"], tok, block_size=8).shape == (2, 2)  # padded to the longest
    with pytest.raises(ValueError, match="17 tokens long.*block_size=8.*truncate=True"):
        ft.encode_texts(["abcdefgh abcdefgh"], tok, block_size=8, truncate=False)
    with pytest.raises(ValueError, match="no tokens"):
        ft.encode_texts([""], tok, block_size=8)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_pooling_under_the_padding_mask_ignores_padding(pooling):
    gpt = tiny()
    clf = ft.GPTClassifier(gpt, 3, pooling=pooling).eval()
    seqs = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]]
    X = torch.full((3, 12), ft.PAD)
    for i, s in enumerate(seqs):
        X[i, : len(s)] = torch.tensor(s)
    batched, _ = clf(X)
    for i, s in enumerate(seqs):
        alone, _ = clf(torch.tensor([s]))
        torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=1e-5)
    h = gpt.features(torch.tensor([seqs[0]]))
    expected = {"last": h[0, -1], "mean": h[0].mean(0), "max": h[0].amax(0)}[pooling]
    torch.testing.assert_close(ft.pool(gpt.features(X.clamp(min=0))[:1], X[:1] >= 0, pooling)[0], expected)


def test_last_token_pool_any_mask():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    assert ft.last_token_pool(h, mask).flatten().tolist() == [1.0, 6.0]
    with pytest.raises(ValueError, match="no real token"):
        ft.last_token_pool(h, torch.zeros(2, 4, dtype=torch.bool))


def test_max_pool_takes_each_feature_over_real_tokens_only():
    h = torch.tensor([[[1.0, -5.0], [3.0, -7.0], [9.0, 9.0]], [[-2.0, 4.0], [-1.0, 0.0], [8.0, 8.0]]])
    mask = torch.tensor([[True, True, False], [True, True, False]])  # the 9s and 8s are padding
    assert ft.max_pool(h, mask).tolist() == [[3.0, -5.0], [-1.0, 4.0]]
    with pytest.raises(ValueError, match="no real token"):
        ft.max_pool(h, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="'last', 'mean' or 'max'"):
        ft.pool(h, mask, "sum")


def test_accuracy_and_confusion_matrix():
    pred, labels = torch.tensor([0, 1, 1, 2, 0]), torch.tensor([0, 1, 0, 2, 2])
    assert ft.accuracy(pred, labels) == pytest.approx(0.6)
    assert ft.confusion_matrix(pred, labels, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match=r"0 \.\. 1 .*label 2 at position 1"):
        ft.check_labels([0, 2, 1], 2)
    with pytest.raises(ValueError, match="label -1"):
        ft.check_labels([-1], 2)


def test_tokenizer_not_matching_the_checkpoint_is_refused():
    text = "the film is good and the film is bad " * 20
    bpe = BPETokenizer.train(text, 260)
    other = BPETokenizer.train(text[::-1], 260)
    gpt = tiny(vocab=260)
    gpt.tokenizer_fingerprint = ft.tokenizer_fingerprint(bpe)
    ft.encode_for(gpt, bpe, ["the film"])  # the right one passes
    with pytest.raises(ValueError, match="260 rows|not the tokenizer"):
        ft.encode_for(tiny(vocab=40), bpe, ["the film"])
    with pytest.raises(ValueError, match="has 65 tokens but the checkpoint's embedding has 260 rows"):
        ft.check_tokenizer(gpt, CharTokenizer([chr(i) for i in range(32, 97)]))
    with pytest.raises(ValueError, match="right size but is not the one"):
        ft.encode_for(gpt, other, ["the film"])


def test_lora_pattern_matching_nothing_is_refused():
    clf = ft.GPTClassifier(tiny(), 2)
    with pytest.raises(ValueError, match="matches no Linear layer"):
        ft.prepare(clf, "lora", lora_pattern=r"self\.query")


@pytest.mark.parametrize("mode", ["head", "full", "lora"])
def test_finetune_through_the_one_loop_learns_and_freezes(mode):
    """A toy task (label = is token 5 in the text) learnt by train(); frozen weights stay as they were."""
    torch.manual_seed(0)
    X = torch.randint(6, 40, (256, 10))
    y = torch.randint(0, 2, (256,))
    X[y == 1, torch.randint(0, 10, (int(y.sum()),))] = 5
    X[:, 8:] = torch.where(torch.rand(256, 2) < 0.5, ft.PAD, X[:, 8:])
    X[:, 9] = torch.where(X[:, 8] == ft.PAD, ft.PAD, X[:, 9])  # padding only at the end
    data = {"train": (X[:192], y[:192]), "val": (X[192:], y[192:])}
    gpt = tiny()
    clf = ft.GPTClassifier(gpt, 2, pooling="mean", dropout=0.0)
    trainable, total = ft.prepare(clf, mode)
    wte = gpt.transformer.wte.weight.detach().clone()
    cfg = TrainConfig(max_steps=80, learning_rate=3e-3, eval_interval=60, eval_iters=2, progress=False)
    result = ft.finetune(clf, data, cfg, batch_size=32, device="cpu")
    assert result.history.val_loss[-1] < result.history.val_loss[0]
    assert result.trainable == trainable and result.memory_bytes > 0
    assert torch.equal(gpt.transformer.wte.weight, wte) == (mode != "full")
    if mode == "head":
        assert trainable == 16 * 2 + 2
    if mode == "lora":
        assert trainable < 0.2 * total


def test_finetune_refuses_bad_labels():
    clf = ft.GPTClassifier(tiny(), 2)
    X = torch.randint(0, 40, (8, 4))
    with pytest.raises(ValueError, match="label 3"):
        ft.finetune(clf, {"train": (X, torch.tensor([0, 1, 3, 0, 1, 0, 1, 0])), "val": (X, torch.zeros(8).long())},
                    TrainConfig(max_steps=1, progress=False), 4, "cpu")


def test_minilm_encoder_offline(monkeypatch):
    pytest.importorskip("sentence_transformers")
    from minilm.finetune.encoder import minilm_classifier

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clf, tok = minilm_classifier(2)
    X = ft.encode_texts(["a gorgeous, moving film", "dull and far too long"], tok, 32)
    assert X[:, 0].tolist() == [101, 101]  # [CLS]
    with torch.no_grad():
        feats = clf.eval().features(X)
        logits, _ = clf(X)
    assert feats.shape == (2, 384) and logits.shape == (2, 2)
    # the same embeddings as sentence-transformers' own encode (mean pooling, then its Normalize module)
    from minilm.finetune.encoder import minilm_encoder

    st = minilm_encoder()
    ref = st.encode(["a gorgeous, moving film"], convert_to_tensor=True)
    torch.testing.assert_close(torch.nn.functional.normalize(feats[:1], dim=-1), ref.cpu(), atol=1e-4, rtol=1e-4)


def test_benchmark_quick(tmp_path):
    out = tmp_path / "figures.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "finetune.py"), "--quick", "--skip-minilm",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "target >= 0.75" in proc.stdout and "Pang and Lee 2005" in proc.stdout
    figures = json.loads(out.read_text())
    assert {row["labels"] for row in figures["gpt"]["gap"]} and set(figures["gpt"]["modes"]) == {"head", "full", "lora", "lora_no_wte"}
    assert 0.0 <= figures["gpt"]["modes"]["lora"]["test_acc"] <= 1.0


def _benchmark(name: str):
    """benchmarks/<name>.py imported as a module (the folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_gap_is_the_mean_of_paired_seeds():
    """benchmarks/finetune.py judges 'ahead at 1,000 labels' on the paired gap's 95 % interval over seeds."""
    bench = _benchmark("finetune")

    def run(test, val):
        return {"labels": 1000, "test_acc": test, "val_acc": val}

    pairs = [(run(0.60, 0.61), run(0.66, 0.65)), (run(0.64, 0.62), run(0.62, 0.66)), (run(0.62, 0.60), run(0.67, 0.63))]
    row = bench._gap_row(pairs)
    assert row["labels"] == 1000 and row["scratch"] is pairs[0][0] and row["pretrained"] is pairs[0][1]
    assert [round(r["gap_test"], 6) for r in row["seeds"]] == [0.06, -0.02, 0.05]
    assert abs(row["mean"]["gap_test"] - 0.03) < 1e-9 and abs(row["mean"]["pretrained_val"] - 0.646667) < 1e-6
    assert abs(row["gap_sd"] - 0.0435889894) < 1e-6
    assert bench._gap_row(pairs[:1])["gap_sd"] is None
    t = row["interval"]["test"]  # mean 0.03, sd 0.0436 over 3 seeds: t(0.975, 2) = 4.303 -> +-0.108
    assert abs(t["lo"] - (0.03 - 4.303 * 0.0435889894 / 3 ** 0.5)) < 1e-6 and t["verdict"] == "no difference measured"
    ahead = [(run(0.60, 0.6), run(0.65, 0.6)), (run(0.61, 0.6), run(0.65, 0.6)), (run(0.60, 0.6), run(0.66, 0.6))]
    assert bench._gap_row(ahead)["interval"]["test"]["verdict"] == "ahead"


def test_the_recipe_sweep_runs_and_reads_no_test_text(tmp_path, monkeypatch):
    """benchmarks/finetune_sweep.py (how the recipe was chosen, on val) runs every kind of RUN it documents."""
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    sweep = _benchmark("finetune_sweep")
    seen = []
    real_split = ft.rt_polarity_split

    def watched_split():
        parts = real_split()
        seen.append(parts["test"].texts)
        return parts

    monkeypatch.setattr(sweep.ft, "rt_polarity_split", watched_split)
    encoded = []
    real_encode = ft.encode_for
    monkeypatch.setattr(sweep.ft, "encode_for", lambda m, t, texts: encoded.append(list(texts)) or real_encode(m, t, texts))
    lines = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert sweep.main(["--bag-of-words", "--vocab", "300", "--steps", "3", "--reviews", "3", "--n-layer", "1", "--n-embd", "32", "--train-texts", "48",
                       "full:last:1e-3:2", "head:mean:3e-3:2", "lora:last:1e-3:2:16:2", "full-wte:last:1e-3:2",
                       "lora+wte:last:1e-3:2:0:2:c_attn"]) == 0
    runs = [line for line in lines if line.startswith("  ") and ": val " in line]
    assert len(runs) == 5 and all("trainable" in line for line in runs), lines
    assert any(line.startswith("bag of words") for line in lines), lines
    test_texts = set(seen[0])
    assert not any(test_texts & set(texts) for texts in encoded), "the sweep encoded test texts"


class _TwoLayers(torch.nn.Module):
    """x (B, 3) -> relu(x @ W.T) (B, 5); loss = the sum of squares: autograd saves x, W.T and the relu's output."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 5, bias=False)

    def forward(self, x, y=None):
        h = self.lin(x).relu()  # mm saves x and W.T (a view of the weight); relu saves its output
        return h, (h * h).sum()  # mul saves h twice: one storage


def test_activation_bytes_is_a_hand_count_and_leaves_the_weights_out():
    model, B = _TwoLayers(), 4
    x, y = torch.randn(B, 3), torch.zeros(B, dtype=torch.long)
    by_hand = B * 3 * 4 + B * 5 * 4  # the input x and the relu's output, float32; the weight is not an activation
    assert ft.activation_bytes(model, x, y) == by_hand == 128
    weights = 3 * 5 * 4
    total = ft.training_memory_bytes(model, lambda split: (x, y), "cpu")
    assert total == weights + 3 * weights + by_hand  # weights + gradients + AdamW's two states + activations
    for p in model.parameters():  # frozen: no gradient nor optimizer state; x is no longer saved by mm either
        p.requires_grad_(False)
    x.requires_grad_(True)
    assert ft.training_memory_bytes(model, lambda split: (x, y), "cpu") == weights + B * 5 * 4


def test_activation_bytes_of_a_gpt_counts_no_parameter():
    torch.manual_seed(0)
    gpt = tiny()
    clf = ft.GPTClassifier(gpt, 2)
    x, y = torch.randint(0, 40, (2, 12)), torch.tensor([0, 1])
    acts = ft.activation_bytes(clf, x, y)
    seen_params = []  # the storages autograd saves that are parameters: left out of the count
    ptrs = {p.untyped_storage().data_ptr() for p in clf.parameters()}

    def pack(t):
        if t.untyped_storage().data_ptr() in ptrs:
            seen_params.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        clf(x, y)
    assert seen_params, "autograd saves weights (the case the count must leave out)"
    saved_weights = sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in seen_params}.values())
    assert 0 < acts and saved_weights > acts / 4  # the weights saved are no small share: counting them would show
    bigger = ft.activation_bytes(clf, torch.randint(0, 40, (4, 12)), torch.tensor([0, 1, 0, 1]))
    assert 1.8 * acts < bigger < 2.2 * acts  # activations grow with the batch; weights would not


def test_paired_gap_interval_matches_scipy():
    a, b = [0.70, 0.72, 0.69, 0.71, 0.74], [0.68, 0.70, 0.70, 0.69, 0.70]
    g = ft.paired_gap(a, b)
    gaps = [x - y for x, y in zip(a, b)]
    assert g["n"] == 5 and abs(g["mean"] - 0.018) < 1e-12
    stats = pytest.importorskip("scipy.stats")
    lo, hi = stats.t.interval(0.95, 4, loc=sum(gaps) / 5, scale=stats.sem(gaps))
    assert abs(g["lo"] - lo) < 1e-4 and abs(g["hi"] - hi) < 1e-4
    assert g["verdict"] == ("ahead" if lo > 0 else "no difference measured")
    assert ft.paired_gap([0.8, 0.81, 0.79], [0.7, 0.7, 0.71])["verdict"] == "ahead"
    assert ft.paired_gap([0.6, 0.61, 0.59], [0.7, 0.7, 0.71])["verdict"] == "behind"
    assert ft.paired_gap([0.7], [0.6])["verdict"] == "no difference measured"  # one seed: no interval
    with pytest.raises(ValueError, match="same number"):
        ft.paired_gap([0.7, 0.7], [0.6])


def test_pretraining_text_holds_no_val_or_test_sentence(split):
    text, counts = ft.pretraining_text(split)
    assert counts["reviews"] == 2000 and counts["review_lines"] == 64_720  # the mirror README's facts
    assert counts["dropped_identical"] == 7  # "7 identical lines of 64,720" (mirror README)
    lines = text.split("\n")
    held_out = set(split["val"].texts) | set(split["test"].texts)
    assert not held_out & set(lines), "a val or test snippet is in the pretraining text"
    runs = set().union(*(ft.reviews.word_runs(t) for t in held_out))
    review_lines = lines[len(split["train"]):]
    assert not any(ft.reviews.word_runs(line) & runs for line in review_lines)
    assert lines[: len(split["train"])] == split["train"].texts  # the train snippets come first, all of them
    assert len(text.split()) > 6 * sum(len(t.split()) for t in split["train"].texts)  # ~7x the labelled text


def test_review_gpt_is_cached_and_checkpoints_to_resume(tmp_path, monkeypatch, split):
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    small = {k: ft.subsample(v, 48, seed=1) for k, v in split.items()}
    import importlib

    rg = importlib.import_module("minilm.finetune.review_gpt")  # the module (its function has the same name)

    configs = []
    real_train = rg.train
    monkeypatch.setattr(rg, "train", lambda model, get, cfg, *a, **k: configs.append(cfg) or real_train(model, get, cfg, *a, **k))
    gpt, tok, _ = ft.review_gpt("smoke", split=small, progress=False)
    assert len(configs) == 1 and configs[0].resume and configs[0].run_name.startswith("review-lm-")
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert any(f.endswith(".tokenizer.json") and "partial" not in f for f in files) and not any("partial" in f for f in files)
    again, tok2, _ = ft.review_gpt("smoke", split=small, progress=False)  # from the cache: no training
    assert len(configs) == 1 and tok2.merges == tok.merges
    torch.testing.assert_close(again.state_dict(), gpt.state_dict())
