"""minilm.bias against direct computations: log-likelihoods, WEAT (scipy cosines, exact permutations),
gendered swaps, exposure, the clear errors of bad input, and the staged training of the zoo (08)."""

import csv
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cosine

from minilm.bias import (
    Pair,
    canary_exposure,
    check_template,
    effect_size,
    exact_continuation_rate,
    exposure_from_rank,
    load_pairs,
    make_canaries,
    p_value,
    paired_preference,
    pronoun_probe,
    rank_of,
    score_sentences,
    seat,
    swap_gendered,
    token_log_probs,
    weat,
)
from minilm.bias.counterfactual import augment
from minilm.bias.experiment import fit_skew, mix_lines, skewed_sentences
from minilm.bias.likelihood import preference
from minilm.bias.memorisation import exact_match_rate
from minilm.bias.weat import seat_sentences
from minilm.data.tokenizers import CharTokenizer
from minilm.models.gpt import GPT, GPTConfig
from minilm.training import zoo

TEXT = "\nabcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,'0123456789"


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.from_text(TEXT)


def tiny_gpt(vocab: int, block: int = 16, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=2, n_head=2, n_embd=16, dropout=0.0)).eval()


@torch.no_grad()
def direct_log_probs(model, ids, block):
    """log p(ids[t] | ids[max(0, t - block):t]) one target at a time, by hand."""
    out = []
    for t in range(1, len(ids)):
        ctx = torch.tensor([ids[max(0, t - block):t]])
        logits, _ = model(ctx)
        out.append(float(F.log_softmax(logits[0, -1], -1)[ids[t]]))
    return out


@torch.no_grad()
def test_log_likelihood_matches_a_direct_computation(tok):
    model = tiny_gpt(tok.vocab_size, block=64)
    texts = ["the nurse said that she was late.", "He ran.", "x"]
    scores = score_sentences(model, tok, texts, prefix="\n")
    for text, s in zip(texts, scores):
        ids = tok.encode("\n" + text)
        x = torch.tensor([ids[:-1]])
        logits, _ = model(x)
        want = F.log_softmax(logits[0], -1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
        assert len(s.per_token) == len(text)  # every character of the text, none of the prefix
        assert np.allclose(s.per_token, want.tolist(), atol=1e-5)
        assert s.total == pytest.approx(float(want.sum()), abs=1e-4)
        assert s.mean == pytest.approx(s.total / len(text))
        # the summed log-likelihood is minus the cross-entropy times the length
        assert s.total == pytest.approx(-F.cross_entropy(logits[0], torch.tensor(ids[1:]), reduction="sum").item(),
                                        abs=1e-4)


@pytest.mark.parametrize("stride", [None, 1, 5])
def test_long_texts_are_scored_in_windows_with_the_longest_context(tok, stride):
    model = tiny_gpt(tok.vocab_size, block=8)
    ids = tok.encode("\nthe quick brown fox jumps over the lazy dog")  # 44 tokens, block 8
    got = token_log_probs(model, [ids, ids[:5]], stride=stride)
    assert got[0].shape == (len(ids) - 1,) and got[1].shape == (4,)
    if stride is None:  # default stride block // 2: context block - stride .. block
        assert np.allclose(got[1].tolist(), direct_log_probs(model, ids[:5], 8), atol=1e-5)
    if stride == 1:  # every target with the full block of context
        assert np.allclose(got[0].tolist(), direct_log_probs(model, ids, 8), atol=1e-5)
    assert torch.isfinite(got[0]).all()


def test_paired_preference_counts_pairs_whose_more_sentence_is_likelier(tok):
    model = tiny_gpt(tok.vocab_size, block=32)
    pairs = [Pair("aaaa aaaa", "zq zq zq zq", "stereo", "gender"), Pair("He ran.", "She ran.", "stereo", "gender"),
             Pair("b", "bbbbbbbbbbbbbbbb", "antistereo", "age"), Pair("caf\u00e9", "cafe", "stereo", "age")]
    res = paired_preference(model, tok, pairs, n_boot=200)
    assert res.n_pairs == 3 and res.n_skipped == 1  # "é" is not in the vocabulary
    deltas = [score_sentences(model, tok, [p.sent_more])[0].total - score_sentences(model, tok, [p.sent_less])[0].total
              for p in pairs[:3]]
    assert np.allclose(res.deltas, deltas, atol=1e-4)
    assert res.preference == pytest.approx(np.mean([d > 0 for d in deltas]))
    assert res.by_type["age"][2] == 1 and res.by_type["gender"][2] == 2
    lo, hi = res.ci
    assert 0 <= lo <= res.preference <= hi <= 1


def test_pair_file_with_a_missing_column_names_the_file(tmp_path):
    bad = tmp_path / "pairs.csv"
    with bad.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "sent_more", "sent_less", "bias_type"])
        w.writerow([0, "a", "b", "gender"])
    with pytest.raises(ValueError, match=r"pairs\.csv.*stereo_antistereo"):
        load_pairs(bad)


def test_crows_pairs_from_the_registry():
    pairs = load_pairs()
    assert len(pairs) == 1508
    assert len({p.bias_type for p in pairs}) == 9 and {p.direction for p in pairs} == {"stereo", "antistereo"}


def test_template_without_its_slot_names_the_template(tok):
    with pytest.raises(ValueError, match="'The doctor said that'.*no slot"):
        check_template("The doctor said that")
    with pytest.raises(ValueError, match="besides"):
        check_template("The {occupation} told {name}")
    model = tiny_gpt(tok.vocab_size)
    with pytest.raises(ValueError, match="The worker said"):
        pronoun_probe(model, tok, ["nurse"], template="The worker said")


def test_pronoun_probe_is_the_sentence_likelihood_gap(tok):
    model = tiny_gpt(tok.vocab_size, block=64)
    probe = pronoun_probe(model, tok, ["nurse", "driver"])
    s = score_sentences(model, tok, ["The nurse said that he ", "The nurse said that she "])
    assert probe.log_ratio["nurse"] == pytest.approx(s[0].total - s[1].total, abs=1e-4)
    p = probe.p_first()["nurse"]
    assert p == pytest.approx(1 / (1 + math.exp(-probe.log_ratio["nurse"])))


# ---------------------------------------------------------------- WEAT


def hand_weat(X, Y, A, B):
    """Caliskan et al.'s formula with scipy's cosine distance, word by word."""
    def s(w):
        return np.mean([1 - cosine(w, a) for a in A]) - np.mean([1 - cosine(w, b) for b in B])
    sx, sy = [s(x) for x in X], [s(y) for y in Y]
    return (np.mean(sx) - np.mean(sy)) / np.std(sx + sy, ddof=1), sx + sy


def test_weat_effect_size_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    X, Y, A, B = (rng.normal(size=(n, 10)) + shift for n, shift in [(5, 0.5), (6, -0.5), (4, 0.5), (7, -0.5)])
    want, _ = hand_weat(X, Y, A, B)
    assert effect_size(X, Y, A, B) == pytest.approx(want, rel=1e-9)
    assert effect_size(Y, X, A, B) == pytest.approx(-want, rel=1e-9)  # swapping the targets flips the sign
    assert effect_size(X, Y, B, A) == pytest.approx(-want, rel=1e-9)
    assert effect_size(X * 3.0, Y, A, B * 0.1) == pytest.approx(want, rel=1e-9)  # cosines ignore lengths


def test_permutation_p_value_exact_and_sampled():
    rng = np.random.default_rng(1)
    X, Y, A, B = (rng.normal(size=(n, 8)) for n in (5, 5, 4, 4))
    _, s = hand_weat(X, Y, A, B)
    observed = sum(s[:5]) - sum(s[5:])
    splits = [sum(s[i] for i in idx) - sum(s[i] for i in range(10) if i not in idx)
              for idx in itertools.combinations(range(10), 5)]
    want = np.mean([v >= observed - 1e-12 for v in splits])
    assert p_value(X, Y, A, B) == pytest.approx(want)  # C(10, 5) = 252: exact
    sampled = p_value(X, Y, A, B, exact_limit=0, n_perm=5000)
    assert abs(sampled - want) < 0.03
    assert p_value(Y, X, A, B) == pytest.approx(1 - want + 1 / 252, abs=1e-9)  # the mirror image (ties once)
    # targets far apart: only the observed split (and none other) reaches the statistic
    a, b = np.eye(8)[0], np.eye(8)[1]
    Xs = np.stack([a + 0.01 * rng.normal(size=8) for _ in range(5)])
    Ys = np.stack([b + 0.01 * rng.normal(size=8) for _ in range(5)])
    assert p_value(Xs, Ys, a[None], b[None]) == pytest.approx(1 / 252)


# WEFE 1.0.1's WEAT (Badilla et al., the `wefe` package) run on `det_vectors(sizes, d, shift)` as float32
# word vectors: (sizes, d, shift, its effect size, its test statistic). WEFE pins numpy <= 1.26.4 and scipy
# < 1.13, so it cannot be installed beside this course's numpy 2 and is not a dependency: the figures were
# made once in a separate environment (python 3.11, numpy 1.26.4, gensim 4.4.0) by building a gensim
# KeyedVectors of these vectors and calling WEAT().run_query(..., preprocessors=[{}]) with
# return_effect_size True and False. WEFE divides by the population standard deviation (ddof=0).
WEFE_WEAT = [
    ((5, 6, 4, 7), 10, (0.5, -0.5, 0.5, -0.5), 0.8802695797325134, 0.4801695610263518),
    ((8, 8, 8, 8), 16, (0.3, 0.0, 0.2, -0.2), 0.3128982720449747, 0.2804863763740286),
    ((25, 25, 25, 25), 32, (0.2, -0.1, 0.1, -0.1), 1.1528877548895449, 1.3653576361387967),
]


def det_vectors(sizes, d, shift):
    """Four sets of deterministic vectors (cosines of integer grids: no random generator, the same anywhere)."""
    out, k = [], 0
    for n, sh in zip(sizes, shift):
        rows = []
        for _ in range(n):
            k += 1
            j = np.arange(d)
            rows.append(np.cos(0.37 * k * (j + 1) + 0.11 * j * j) + sh * np.sin(0.05 * (j + 1)))
        out.append(np.array(rows).astype(np.float32))
    return out


@pytest.mark.parametrize(("sizes", "d", "shift", "wefe_d", "wefe_stat"), WEFE_WEAT)
def test_weat_matches_wefe_on_the_same_vectors(sizes, d, shift, wefe_d, wefe_stat):
    from minilm.bias.weat import association

    X, Y, A, B = det_vectors(sizes, d, shift)
    n = sizes[0] + sizes[1]
    # ours uses the sample standard deviation (ddof=1): WEFE's d times sqrt((n - 1) / n)
    assert effect_size(X, Y, A, B) == pytest.approx(wefe_d * math.sqrt((n - 1) / n), rel=1e-5)
    statistic = association(X, A, B).sum() - association(Y, A, B).sum()
    assert statistic == pytest.approx(wefe_stat, rel=1e-5)


def test_p_value_matches_scipy_permutation_test():
    """scipy.stats.permutation_test, exact over every equal-size split, counts null >= observed (as ours does)."""
    from scipy.stats import permutation_test

    from minilm.bias.weat import association

    for sizes, d, shift in [((5, 6, 4, 7), 10, (0.5, -0.5, 0.5, -0.5)), ((6, 6, 5, 5), 12, (0.0, 0.0, 0.3, -0.3))]:
        X, Y, A, B = det_vectors(sizes, d, shift)
        sx, sy = association(X, A, B), association(Y, A, B)
        ref = permutation_test((sx, sy), lambda u, v, axis: u.sum(axis=axis) - v.sum(axis=axis),
                               permutation_type="independent", alternative="greater", n_resamples=np.inf,
                               vectorized=True)
        assert p_value(X, Y, A, B) == pytest.approx(ref.pvalue, abs=1e-12)
        # Caliskan et al.'s strict '>' leaves out the observed split (and any tie): exactly 1 / C(n, nx) less here
        n, nx = sizes[0] + sizes[1], sizes[0]
        assert p_value(X, Y, A, B, strict=True) == pytest.approx(ref.pvalue - 1 / math.comb(n, nx), abs=1e-12)


def test_weat_runs_any_embedding_function_and_names_an_empty_set():
    table = {"rose": [1.0, 0.1], "tulip": [0.9, 0.0], "ant": [0.0, 1.0], "wasp": [0.1, 0.9],
             "love": [1.0, 0.0], "joy": [0.8, 0.1], "hate": [0.0, 1.0], "pain": [0.1, 1.0]}

    def embed(words):
        return np.array([table[w] for w in words])

    res = weat(embed, ["rose", "tulip"], ["ant", "wasp"], ["love", "joy"], ["hate", "pain"], name="toy")
    assert res.effect_size > 0.9 and res.sizes == (2, 2, 2, 2)
    assert 0 < res.p_value <= 1
    with pytest.raises(ValueError, match="word set A is empty"):
        weat(embed, ["rose"], ["ant"], [], ["hate"])
    with pytest.raises(ValueError, match="word set Y is empty"):
        effect_size(np.ones((2, 2)), np.ones((0, 2)), np.ones((1, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="SEAT flowers: the word set B is empty"):
        seat(embed, ["rose"], ["ant"], ["love"], [], name="flowers")


def test_seat_templates():
    assert seat_sentences(["a rose"], ("This is {}.", "{} is here.")) == ["This is a rose.", "a rose is here."]
    with pytest.raises(ValueError, match="'This is it.'"):
        seat_sentences(["x"], ("This is it.",))


# ---------------------------------------------------------------- counterfactual augmentation


@pytest.mark.parametrize("text, want", [
    ("He said that she was late.", "She said that he was late."),
    ("HE and SHE", "SHE and HE"),
    ("the theme: they hey he", "the theme: they hey she"),  # whole words only
    ("He gave her his book.", "She gave him her book."),  # her as object, his as determiner
    ("I saw her.", "I saw him."),
    ("I saw her mother.", "I saw his father."),  # her as possessive
    ("The book is his.", "The book is hers."),  # his standing alone
    ("Hers is red, his is blue.", "His is red, hers is blue."),
    ("She told him that herself", "He told her that himself"),
    ("he's the King's son", "she's the Queen's daughter"),
    ("Mr Smith and his wife", "Mrs Smith and her husband"),
    ("Nothing gendered here, 42.", "Nothing gendered here, 42."),
])
def test_swap_gendered(text, want):
    assert swap_gendered(text) == want


def test_swap_with_own_pairs_and_bad_pairs():
    assert swap_gendered("The Cat sat.", [("cat", "dog")]) == "The Dog sat."
    with pytest.raises(ValueError, match="'cat' appears twice"):
        swap_gendered("x", [("cat", "dog"), ("cat", "cow")])
    assert augment(["he ran", "it rained"]) == ["he ran", "she ran", "it rained"]


# ---------------------------------------------------------------- memorisation and canaries


def test_exposure_formula_and_rank():
    assert exposure_from_rank(1, 1024) == pytest.approx(10.0)
    assert exposure_from_rank(512, 1024) == pytest.approx(1.0)
    assert exposure_from_rank(1024, 1024) == pytest.approx(0.0)
    assert rank_of(-1.0, [-2.0, 0.5, -1.0, 3.0]) == 3  # two strictly higher; the tie goes to the canary
    with pytest.raises(ValueError, match="rank"):
        exposure_from_rank(0, 10)


class NextId(torch.nn.Module):
    """A 'model' that has memorised one rule: the token after id i is id i + 1."""

    def __init__(self, vocab: int):
        super().__init__()
        self.block_size, self.vocab = 32, vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx):
        return F.one_hot((idx + 1) % self.vocab, self.vocab).float() * 20.0, None


def test_exact_continuation_rate(tok):
    model = NextId(tok.vocab_size)
    follows = tok.decode(list(range(1, 30)))  # ids 1, 2, 3, ...: the rule continues it
    broken = follows[:10] + follows[12] + follows[11] + follows[13:]
    assert exact_continuation_rate(model, tok, [follows, broken, follows[3:]], 8, 6) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no line"):
        exact_continuation_rate(model, tok, ["abc"], 8, 6)


def test_exact_continuation_rate_with_a_prefix_longer_than_the_context(tok):
    """A prefix longer than block_size: the model reads its last block_size tokens (as generate asks)."""
    model = NextId(tok.vocab_size)
    model.block_size = 4
    follows = tok.decode(list(range(1, 30)))
    broken = follows[:10] + follows[12] + follows[11] + follows[13:]
    assert exact_continuation_rate(model, tok, [follows, broken], 8, 6) == pytest.approx(1 / 2)


def test_canary_exposure_of_a_model_that_knows_the_secret(tok):
    canary = make_canaries([3], template="code {}", n_digits=4, seed=1)[0]
    assert len(canary.secret) == 4 and canary.text == f"code {canary.secret}"

    class Knows(torch.nn.Module):
        """Puts all its mass on the canary's next character."""

        def __init__(self):
            super().__init__()
            self.config = GPTConfig(block_size=64, vocab_size=tok.vocab_size)
            self.dummy = torch.nn.Parameter(torch.zeros(1))
            self.seq = tok.encode("\n" + canary.text)

        def forward(self, idx):
            T = idx.shape[1]
            nxt = torch.tensor(self.seq[1:T + 1] + [0] * max(0, T + 1 - len(self.seq)))[:T]
            return F.one_hot(nxt, tok.vocab_size).float().expand(idx.shape[0], T, -1) * 30.0, None

    res = canary_exposure(Knows(), tok, canary, n_random=255)
    assert res.rank == 1 and res.n_candidates == 256 and res.exposure == pytest.approx(8.0)
    with pytest.raises(ValueError, match="slot"):
        make_canaries([1], template="no slot here")


# ---------------------------------------------------------------- the controlled experiment's pieces


def test_skewed_sentences_hold_the_stated_ratio():
    lines = skewed_sentences({"nurse": 0.25, "driver": 0.75}, 8, seed=0)
    assert len(lines) == 16
    assert sum(ln.startswith("The nurse said that he ") for ln in lines) == 2
    assert sum(ln.startswith("The driver said that he ") for ln in lines) == 6
    augmented = augment(lines)
    for occ in ("nurse", "driver"):
        he = sum(ln.startswith(f"The {occ} said that he ") for ln in augmented)
        assert he == sum(ln.startswith(f"The {occ} said that she ") for ln in augmented) == 8
    with pytest.raises(ValueError, match="nurse"):
        skewed_sentences({"nurse": 1.5}, 4)
    mixed = mix_lines(["a", "b", "c"], ["X", "Y"], seed=3)
    assert [m for m in mixed if m in "abc"] == ["a", "b", "c"] and sorted(set(mixed) - {"a", "b", "c"}) == ["X", "Y"]
    fit = fit_skew({"a": 0.1, "b": 0.5, "c": 0.9}, {"a": 0.2, "b": 0.4, "c": 0.8})
    assert fit.pearson_r == pytest.approx(np.corrcoef([0.1, 0.5, 0.9], [0.2, 0.4, 0.8])[0, 1])


def test_the_three_arms_corpora_and_equal_exposure():
    from dataclasses import replace

    from minilm.bias.experiment import arm_steps, build_corpora, experiment_config

    text = "\n".join(f"LINE {i}: the lord said that he would go." for i in range(400))
    cfg = replace(experiment_config("smoke"), base_chars=6_000, per_occupation=10, stages=(5, 100))
    c = build_corpora(cfg, text=text)
    for corpus, share in ((c.train_text, None), (c.even_text, 0.5)):
        lines = corpus.split("\n")
        for occ, p in list(c.p_he.items())[::7]:
            said = [ln for ln in lines if ln.startswith(f"The {occ} said that ")]
            he = sum(ln.startswith(f"The {occ} said that he ") for ln in said)
            assert len(said) == 10 and he == round(10 * (p if share is None else share)), (occ, he)
        assert sum(ln.startswith("my secret code is ") for ln in lines) == sum(cfg.canary_insertions)
    # the augmented corpus holds every original line once (plus twins): steps scale with its length
    steps = arm_steps(c, cfg)
    assert steps["skewed"] == steps["even"] == 100
    assert steps["augmented"] == round(100 * len(c.cda_text) / len(c.train_text)) > 150
    n = c.train_text.count("the lord said that he would go.")
    assert n > 100 and c.cda_text.count("the lord said that he would go.") == n
    assert c.cda_text.count("the dame said that she would go.") == n  # each line's twin, once


def test_t_interval_and_paired_difference_match_scipy():
    from scipy import stats

    from minilm.bias.experiment import ArmStats, paired_difference, t_interval

    v = [0.31, 0.27, 0.36]
    mean, lo, hi = t_interval(v)
    want = stats.t.interval(0.95, 2, loc=np.mean(v), scale=stats.sem(v))
    assert mean == pytest.approx(np.mean(v)) and (lo, hi) == pytest.approx(want)
    a = ArmStats("skewed", 10, {"gap": [0.3, 0.4, 0.5]}, {})
    b = ArmStats("augmented", 19, {"gap": [0.1, 0.1, 0.3]}, {})
    assert paired_difference(a, b) == pytest.approx(t_interval([-0.2, -0.3, -0.2]))
    with pytest.raises(ValueError, match="at least 2 values"):
        t_interval([0.3])


def test_arms_train_once_per_seed_and_load_after(tmp_path, monkeypatch):
    from dataclasses import replace

    from minilm.bias.experiment import (
        PROBE,
        arm_stats,
        build_corpora,
        experiment_config,
        experiment_tokenizer,
        train_arm,
    )

    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MINILM_CHECKPOINT_DIR", raising=False)
    text = "\n".join(f"LINE {i}: the lord said that he would go." for i in range(200))
    cfg = replace(experiment_config("smoke"), base_chars=3_000, per_occupation=2, stages=(3, 6))
    c = build_corpora(cfg, text=text)
    tok = experiment_tokenizer(c)
    runs = {arm: [train_arm(arm, c, tok, cfg, "smoke", seed, device="cpu") for seed in (1, 2)]
            for arm in ("skewed", "augmented")}
    assert [h.steps[-1] for _, h in runs["skewed"][0]] == [3, 6] and len(runs["augmented"][0]) == 1
    first = [p.detach().clone() for p in runs["skewed"][0][-1][0].parameters()]
    other = list(runs["skewed"][1][-1][0].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(first, other))  # the seed changes the run
    monkeypatch.setattr(zoo, "train_gpt", lambda *a, **k: pytest.fail("must load from the cache"))
    again = train_arm("skewed", c, tok, cfg, "smoke", 1, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(first, again[-1][0].parameters()))
    st = arm_stats("skewed", [r[-1] for r in runs["skewed"]], tok, c.p_he)
    assert st.steps == 6 and len(st.per_seed["gap"]) == 2 and st.ci["gap"][1] <= st.ci["gap"][0] <= st.ci["gap"][2]
    ratios = np.array(list(pronoun_probe(runs["skewed"][1][-1][0], tok, list(c.p_he), PROBE).log_ratio.values()))
    assert st.per_seed["offset"][1] == pytest.approx(ratios.mean())
    assert st.per_seed["spread"][1] == pytest.approx(np.abs(ratios - ratios.mean()).mean())
    assert st.per_seed["gap"][1] == pytest.approx(np.abs(ratios).mean())
    with pytest.raises(ValueError, match="unknown arm"):
        train_arm("balanced", c, tok, cfg, "smoke", 1)


def test_train_stages_are_snapshots_of_one_run_and_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MINILM_CHECKPOINT_DIR", raising=False)
    text = "the cat sat on the mat. " * 200
    tok = CharTokenizer.from_text(text)
    data = torch.tensor(tok.encode(text))
    recipe = zoo.recipe_for("smoke", tok.vocab_size)
    runs = zoo.train_stages("toy", recipe, data[:4000], data[4000:], tok, [6, 12], extra={"c": 1},
                            preset="smoke", device="cpu", progress=False)
    assert [h.steps[-1] for _, h in runs] == [6, 12]
    assert runs[1][1].step_loss[:6] == runs[0][1].step_loss  # stage 2 continued stage 1
    monkeypatch.setattr(zoo, "train_gpt", lambda *a, **k: pytest.fail("must load from the cache"))
    again = zoo.train_stages("toy", recipe, data[:4000], data[4000:], tok, [6, 12], extra={"c": 1},
                             preset="smoke", device="cpu", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(runs[1][0].state_dict().values(), again[1][0].state_dict().values()))
    with pytest.raises(ValueError, match="increasing"):
        zoo.train_stages("toy", recipe, data, data, tok, [12, 6])


# ---------------------------------------------------------------- exercise set 08 and the benchmark


def _swap_shortcut(text, pairs):
    return swap_gendered(text, [tuple(p) for p in pairs])


SHORTCUTS_08 = {  # each is right when nothing watches it, and each is refused by check()
    "sentence_log_likelihood": lambda logits, t: -F.cross_entropy(logits, t, reduction="sum").item(),
    "paired_preference": lambda more, less: preference(more, less),
    "weat_effect_size": lambda X, Y, A, B: effect_size(X.numpy(), Y.numpy(), A.numpy(), B.numpy()),
    "swap_words": _swap_shortcut,
    "exact_match_rate": lambda g, r, p: exact_match_rate(g, r, p),
    "canary_exposure": lambda c, cands: exposure_from_rank(rank_of(c, cands), len(cands) + 1),
}


def test_set_08_refuses_the_library_and_pytorch_shortcuts(capsys):
    import copy

    from minilm.grading import check
    from minilm.grading.compare import decode, encode, same
    from minilm.grading.sets import get_set

    s = get_set("08")
    assert sorted(SHORTCUTS_08) == sorted(ex.id for ex in s.exercises) and len(s.exercises) >= 5
    for ex in s.exercises:
        shortcut = SHORTCUTS_08[ex.id]
        for case in ex.public:  # unwatched, the shortcut is a real answer
            got = decode(encode(ex.call(shortcut, *copy.deepcopy(case.args))))
            assert same(case.expected, got, ex.rtol, ex.atol)[0], (ex.id, case.args, got)
        check(ex.id, shortcut)
        out = capsys.readouterr().out
        assert out.count("not allowed in this exercise") >= 1, (ex.id, out)


def test_benchmark_quick_runs_and_reports_every_target(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MINILM_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("MINILM_CHECKPOINT_DIR", None)
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "bias.py"), "--quick", "--json",
                          str(tmp_path / "bias.json")], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for words in ("Pearson r", "target >= 0.8", "target <= 0.5", "target rise <= 0.05", "training", "held-out",
                  "exposure", "flowers/insects", "even control", "paired by seed"):
        assert words in out.stdout, words
    figures = json.loads((tmp_path / "bias.json").read_text())
    exp = figures["experiment"]
    assert exp["preset"] == "smoke" and exp["occupations"] == 40
    assert sorted(exp["arms"]) == ["augmented", "even", "skewed"]
    assert all(len(a["per_seed"]["gap"]) == len(exp["seeds"]) >= 2 for a in exp["arms"].values())
    assert exp["arms"]["augmented"]["steps"] > exp["arms"]["skewed"]["steps"] == exp["arms"]["even"]["steps"]
    assert [c["insertions"] for c in exp["canaries"]] == [0, 1, 4]
    assert len(exp["memorisation"]) == 2
    if "skipped" not in figures["weat"]:
        assert figures["weat"]["flowers/insects"]["glove_d"] == 1.50
