"""The acrostic task (minilm.align.verifier, minilm.align.task): the checker on hand-made answers, the splits."""

from __future__ import annotations

import pytest
import torch

from minilm.align.task import (
    Task,
    acrostic_splits,
    complete,
    pass_gap,
    pass_rate,
    passes,
    quatrain_of,
    with_random_heads,
)
from minilm.align.template import END, ChatTokenizer, grow_vocab
from minilm.align.verifier import check, heads_of, lines_of, reward
from minilm.data.tokenizers import CharTokenizer
from minilm.models.gpt import GPT, GPTConfig

POEM = "春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。"


def test_a_correct_acrostic_passes():
    v = check(POEM, "春處夜花")
    assert (v.form, v.heads, v.passed, v.reward) == (True, 4, True, 1.0)
    assert heads_of(POEM) == "春處夜花"


@pytest.mark.parametrize("answer, heads, form, right", [
    (POEM, "春處夜月", True, 3),                                      # one head wrong
    ("春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少", "春處夜花", False, 4),   # last 。 missing
    ("春眠不覺曉。處處聞啼鳥，夜來風雨聲，花落知多少。", "春處夜花", False, 4),  # punctuation swapped
    ("春眠不覺曉曉，處處聞啼鳥。夜來風雨聲，花落知多少。", "春處夜花", False, 4),  # six characters
    (POEM + "春眠不覺曉，", "春處夜花", False, 4),                         # more than four lines
    ("春眠a覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。", "春處夜花", False, 4),   # not a Chinese character
    ("", "春處夜花", False, 0),
    ("。。。。", "春處夜花", False, 0),
])
def test_what_fails(answer, heads, form, right):
    v = check(answer, heads)
    assert (v.form, v.heads, v.passed) == (form, right, False)
    assert reward(answer, heads) == 0.5 * form + 0.125 * right


def test_heads_must_be_four_characters():
    for bad in ("春處夜", "春處夜花月", "abcd", ""):
        with pytest.raises(ValueError, match="four|4"):
            check(POEM, bad)


def test_quatrain_of_regulated_verse_keeps_two_couplets():
    verse = "一二三四五，六七八九十。甲乙丙丁戊，己庚辛壬癸。子丑寅卯辰，巳午未申酉。天地玄黃宇，宙洪荒日月。"
    assert quatrain_of(verse) == "一二三四五，六七八九十。甲乙丙丁戊，己庚辛壬癸。"
    assert heads_of(verse) == "一六甲己"


def test_splits_hold_out_unseen_poems_and_heads():
    poems = [f"{a}二三四五，{b}七八九十。甲乙丙丁戊，己庚辛壬癸。" for a, b in
             ["一六", "春秋", "夏冬", "一六", "日月", "風雲", "山水"]]
    text = "\n".join(poems) + "\n"
    splits = acrostic_splits(text, n_val=1, n_test=1, val_fraction=0.5)
    # the cut at half the text falls inside poem 4 ("一六..." again): 0-2 train, 3 dropped (cut),
    # 4-6 held out; none of their heads is a training heads string
    assert [t.heads for t in splits["train"]] == ["一六甲己", "春秋甲己", "夏冬甲己"]
    assert [t.heads for t in splits["val"]] == ["日月甲己"] and [t.heads for t in splits["test"]] == ["風雲甲己"]
    with pytest.raises(ValueError, match="held-out"):
        acrostic_splits(text, n_val=3, n_test=1, val_fraction=0.5)
    skipped = acrostic_splits(text, n_val=1, n_test=1, val_fraction=0.5, test_skip=1)  # a retired test split
    assert skipped["val"] == splits["val"] and [t.heads for t in skipped["test"]] == ["山水甲己"]
    with pytest.raises(ValueError, match="test_skip=2"):
        acrostic_splits(text, n_val=1, n_test=1, val_fraction=0.5, test_skip=2)


def test_random_heads_are_copied_into_the_poem():
    poems = [f"{a}二三四五，{b}七八九十。甲乙丙丁戊，己庚辛壬癸。" for a, b in ["一六", "春秋", "夏冬", "日月"] * 25]
    tasks = [Task(heads_of(p), quatrain_of(p)) for p in poems]
    alphabet = "天地玄黃宇宙洪荒"
    out = with_random_heads(tasks, 0.5, alphabet, seed=3)
    changed = [(a, b) for a, b in zip(tasks, out, strict=True) if a != b]
    assert 30 <= len(changed) <= 70  # about half, seeded
    for old, new in changed:
        assert set(new.heads) <= set(alphabet) and heads_of(new.poem) == new.heads and check(new.poem, new.heads).passed
        assert [line[1:] for line in lines_of(new.poem)] == [line[1:] for line in lines_of(old.poem)]
    assert with_random_heads(tasks, 0.5, alphabet, seed=3) == out and with_random_heads(tasks, 0.0, "") == tasks
    with pytest.raises(ValueError, match="fraction"):
        with_random_heads(tasks, 1.5, alphabet)
    with pytest.raises(ValueError, match="alphabet"):
        with_random_heads(tasks, 0.5, "")


def test_complete_and_pass_rate_on_a_model_that_knows_one_answer():
    tok = ChatTokenizer(CharTokenizer.from_text(POEM + "五言藏頭詩"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=tok.base.vocab_size, n_layer=1, n_head=2, n_embd=16))
    grow_vocab(model, tok.vocab_size)
    task = Task("春處夜花", POEM)
    answers = complete(model, tok, [[tok.id("<|user|>")], [tok.id("<|user|>"), 0]], max_new_tokens=5)
    assert [len(a) <= 5 for a in answers] == [True, True]
    # teach it the one answer (a few steps of plain SFT), then it passes greedily
    from minilm.align.sft import masked_loss, sft_batches
    from minilm.align.task import sft_example
    from minilm.training.loop import TrainConfig, train
    ex = [sft_example(task, tok, 65)]
    get, gen = sft_batches(ex, ex, 2, tok.id(END), "cpu")
    train(model, get, TrainConfig(max_steps=150, learning_rate=1e-2, eval_interval=150, eval_iters=1,
                                  progress=False), "cpu", generator=gen)
    assert masked_loss(model, ex, tok.id(END), "cpu") < 0.05
    rate, answers = pass_rate(model, tok, [task], "cpu")
    assert (rate, answers) == (1.0, [POEM])


def test_passes_and_the_paired_gap_between_two_stages():
    tasks = [Task("春處夜花", POEM)] * 4
    wrong = "秋" + POEM[1:]
    assert passes([POEM, wrong, POEM, POEM], tasks) == [True, False, True, True]
    with pytest.raises(ValueError, match="one answer per task"):
        passes([POEM], tasks)
    # 100 instructions: stage a passes 40 that b fails, b passes 10 that a fails, 50 alike (by hand below)
    a = [True] * 40 + [False] * 10 + [True] * 30 + [False] * 20
    b = [False] * 40 + [True] * 10 + [True] * 30 + [False] * 20
    gap = pass_gap(a, b)
    d = [1.0] * 40 + [-1.0] * 10 + [0.0] * 50  # per-instruction differences: mean 0.3
    mean = sum(d) / 100
    sd = (sum((x - mean) ** 2 for x in d) / 99) ** 0.5
    assert gap["n"] == 100 and gap["mean"] == pytest.approx(0.30)
    assert (gap["lo"], gap["hi"]) == pytest.approx((mean - 1.96 * sd / 10, mean + 1.96 * sd / 10))
    assert gap["verdict"] == "ahead"
    # a gap of 2 of 100 is within the noise; the reverse order is behind
    assert pass_gap(a[:2] + [False] * 98, [False] * 100)["verdict"] == "no difference measured"
    assert pass_gap(b, a)["verdict"] == "behind"
