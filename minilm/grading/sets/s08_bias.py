"""Exercise set 08, bias probes and responsible use (solutions/08_bias.ipynb; taught in notebook 08).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: logits of several lengths and vocabularies (one case at scale 100 or more, where a log-sum-exp
without the max shift overflows), paired scores with ties, random embedding sets of unequal sizes,
sentences with every case pattern and with gendered words inside other words, generations that differ
just before and just after the prefix, canary scores tied with a candidate and above all of them.
"""

from __future__ import annotations

import random

import torch

from ..spec import TOL_FLOAT32_SUMS, Case, Exercise, ExerciseSet
from .builders import randint, randn
from .equivalents import forbid


def _loglik_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for T, V, scale in [(1, 2, 1.0), (rng.randint(2, 8), rng.randint(3, 30), rng.choice([0.5, 5.0])),
                        (rng.randint(10, 64), 65, rng.choice([1.0, 5.0])), (rng.randint(1, 5), rng.randint(50, 300), 5.0),
                        (rng.randint(2, 4), 2, 0.5), (rng.randint(20, 40), rng.randint(5, 20), rng.choice([100.0, 300.0]))]:
        cases.append((randn(rng, T, V, scale=scale), randint(rng, 0, V, T)))  # scale >= 100: exp overflows float32
    return cases


def _paired_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n in (1, 2, rng.randint(3, 10), rng.randint(11, 30), rng.randint(20, 200)):
        more = [round(rng.uniform(-80, -5), 2) for _ in range(n)]
        less = [m + rng.choice([-3.0, -0.5, 0.0, 0.25, 4.0]) for m in more]  # ties included
        if n > 2:
            less[-1] = more[-1]  # a tie for certain
        cases.append((more, less))
    return cases


def _weat_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for d in (2, 2, rng.randint(3, 16), rng.randint(17, 64), 384):
        sizes = [rng.randint(1, 8) for _ in range(4)]
        sizes[0] = max(sizes[0], 2)  # X u Y has at least 3 words
        shift = rng.choice([0.0, 0.5, 2.0])
        cases.append((randn(rng, sizes[0], d, offset=shift), randn(rng, sizes[1], d, offset=-shift),
                       randn(rng, sizes[2], d, offset=shift), randn(rng, sizes[3], d, scale=3.0)))
    return cases


_WORDS = ["he", "she", "king", "queen", "man", "woman", "the", "there", "then", "hello", "mankind", "shed",
          "kingdom", "a", "said", "that", "was", "late"]
_PAIRS = [["he", "she"], ["king", "queen"], ["man", "woman"]]


def _case_of(word: str, rng: random.Random) -> str:
    style = rng.choice(["lower", "title", "upper"])
    return word.upper() if style == "upper" else word.title() if style == "title" else word


def _swap_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for k in range(5):
        words = [_case_of(rng.choice(_WORDS), rng) for _ in range(rng.randint(1, 10))]
        if k == 0:  # one sentence has an UPPER and a Title gendered word, and one inside a longer word
            words += [rng.choice(["HE", "SHE", "KING", "MAN"]), rng.choice(["She", "Queen", "Woman", "He"]),
                      rng.choice(["there", "shed", "mankind", "kingdom", "Hello"])]
            rng.shuffle(words)
        text = "".join(w + rng.choice([" ", " ", ", ", ". ", "'s ", "-"]) for w in words)
        cases.append((text.strip(), _PAIRS))
    cases.append(("", _PAIRS))
    cases.append(("the cat and the dog", [["cat", "dog"]]))
    return cases


def _memo_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n, p, k in [(1, 1, 1), (rng.randint(2, 6), rng.randint(1, 8), rng.randint(1, 8)), (50, 16, 12),
                    (rng.randint(5, 20), 1, rng.randint(2, 6)), (rng.randint(2, 9), rng.randint(4, 12), 1)]:
        ref = randint(rng, 0, 5, n, p + k)
        gen = ref.clone()
        for i in range(n):
            if rng.random() < 0.5:
                j = rng.randrange(p + k)  # a change in the prefix does not count; in the continuation it does
                gen[i, j] = (gen[i, j] + 1) % 5
        cases.append((gen, ref, p))
    n, p, k = rng.randint(3, 8), rng.randint(2, 6), rng.randint(2, 6)
    ref = randint(rng, 0, 5, n, p + k)
    gen = ref.clone()
    gen[0, p - 1] = (gen[0, p - 1] + 1) % 5  # the last prefix token differs: still a match
    gen[1, p] = (gen[1, p] + 1) % 5  # the first continuation token differs: not a match
    cases.append((gen, ref, p))
    return cases


def _exposure_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n, tie in [(1, False), (2, True), (rng.randint(3, 20), False), (rng.randint(21, 99), True),
                   (rng.randint(100, 999), False)]:
        cands = [round(rng.uniform(-40, -10), 1) for _ in range(n)]
        canary = rng.choice(cands) if tie else rng.choice([round(rng.uniform(-45, -5), 1), max(cands) + 1.0])
        cases.append((canary, cands))
    return cases


_BIAS = "minilm.bias"

SET = ExerciseSet(
    name="08_bias",
    exercises=(
        Exercise(
            id="sentence_log_likelihood", points=2, rtol=1e-4, atol=1e-4,
            forbidden=forbid("negative log-likelihood", "log-softmax", library=_BIAS),
            public=(
                Case((torch.zeros(2, 4), torch.tensor([1, 3])), -2.772588722239781, note="uniform: 2 * log(1/4)"),
                Case((torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 5.0], [1.0, 1.0, 1.0]]), torch.tensor([0, 2, 1])),
                     -1.281844139099121),
                Case((torch.tensor([[100.0, 0.0]]), torch.tensor([1])), -100.0, note="large logits: stay stable"),
            ),
            draw=_loglik_inputs,
            describe_grading="random logits (T up to 64, V up to 300, scaled 0.5x to 300x) and targets "
            "(checked against -cross_entropy(..., reduction='sum'))",
        ),
        Exercise(
            id="paired_preference", points=1, forbidden=forbid(library=_BIAS),
            public=(
                Case(([-10.0, -20.0, -5.0, -7.0], [-12.0, -15.0, -5.0, -9.5]), 0.5, note="a tie is no preference"),
                Case(([-3.5], [-4.0]), 1.0),
            ),
            draw=_paired_inputs,
            describe_grading="1 to 200 pairs of log-likelihoods, ties included",
        ),
        Exercise(
            id="weat_effect_size", points=2, forbidden=forbid("cosine similarity", library=_BIAS), **TOL_FLOAT32_SUMS,
            public=(
                Case((torch.tensor([[1.0, 0.0], [0.9, 0.1]]), torch.tensor([[0.0, 1.0]]),
                      torch.tensor([[1.0, 0.2]]), torch.tensor([[0.1, 1.0], [0.0, 2.0]])),
                     1.730025053024292, note="2-D; B's vectors have different lengths"),
                Case((torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [1.0, 1.0, 1.0]]),
                      torch.tensor([[0.0, 1.0, 3.0], [-1.0, 0.0, 1.0]]),
                      torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
                     1.735573649406433),
            ),
            draw=_weat_inputs,
            describe_grading="random sets of 1 to 8 vectors of 2 to 384 dimensions, shifted apart or not "
            "(checked against minilm.bias.effect_size)",
        ),
        Exercise(
            id="swap_words", points=2, forbidden=forbid(library=_BIAS),
            public=(
                Case(("He said she was late.", [["he", "she"]]), "She said he was late."),
                Case(("THE KING and the Queen's man", [["king", "queen"], ["man", "woman"]]),
                     "THE QUEEN and the King's woman", note="upper case and capitals kept"),
                Case(("the theme: hello, shed mankind", [["he", "she"], ["man", "woman"]]),
                     "the theme: hello, shed mankind", note="whole words only"),
                Case(("", [["he", "she"]]), "", note="empty text"),
            ),
            draw=_swap_inputs,
            describe_grading="random sentences of gendered and ungendered words in lower, Title and UPPER "
            "case, with punctuation, apostrophes, hyphens and gendered words inside longer words; empty text",
        ),
        Exercise(
            id="exact_match_rate", points=1, forbidden=forbid(library=_BIAS),
            public=(
                Case((torch.tensor([[1, 2, 3, 4], [1, 2, 0, 4], [0, 2, 3, 4]]),
                      torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]), 2), 0.6666666666666666,
                     note="a difference in the prefix does not count"),
                Case((torch.tensor([[5, 6]]), torch.tensor([[5, 6]]), 1), 1.0),
                Case((torch.tensor([[5, 0, 7, 8], [5, 6, 7, 0]]), torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8]]), 2), 0.5,
                     note="the last prefix token differs in row 1 (a match), the last token in row 2 (not one)"),
            ),
            draw=_memo_inputs,
            describe_grading="1 to 50 generations with prefixes of 1 to 16 and continuations of 1 to 12 tokens, "
            "differences right before and right after the prefix",
        ),
        Exercise(
            id="canary_exposure", points=1, forbidden=forbid(library=_BIAS),
            public=(
                Case((-10.0, [-12.0, -11.0, -20.0]), 2.0, note="rank 1 of 4: log2(4) bits"),
                Case((-15.0, [-12.0, -15.0, -20.0, -14.0, -30.0, -40.0, -50.0]), 1.415037499278844,
                     note="a tie goes to the canary: rank 3 of 8, log2(8) - log2(3)"),
            ),
            draw=_exposure_inputs,
            describe_grading="1 to 999 candidates, the canary tied with one or above all",
        ),
    ),
)
