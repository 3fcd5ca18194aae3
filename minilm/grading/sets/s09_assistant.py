"""Exercise set 09, from a language model to an assistant (solutions/09_assistant.ipynb; taught in notebook 09).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: conversations of 1 to 7 messages with empty system prompts and empty answers, padded batches with
rows that train nothing, sequence log-probabilities with unscored rows, DPO losses far from log 2 in both
directions (one where sigma underflows float32), reward groups with ties and constant groups, and answers
broken in every way the verifier checks (a line too long, punctuation swapped or missing, a non-Chinese
character, a trailing newline, more than four lines, wrong heads).
"""

from __future__ import annotations

import random

import torch

from ..spec import TOL_FLOAT32_SUMS, Case, Exercise, ExerciseSet
from .builders import f32, i64, randint, randn
from .equivalents import forbid

_ALIGN = ("minilm.align", "trl")  # the library's twins, and an alignment library if one is installed
_SCORER = "minilm.bias.likelihood"  # token_log_probs: log p(target) at every position, the twin outside minilm.align
_SPECIALS = {"system": 10, "user": 11, "assistant": 12, "end": 13}
_POEM = "春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。"
_HAN = "山水風月花雲春秋日夜天地人心江城"  # characters for the drawn poems


def _render_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(6):
        msgs = []
        if rng.random() < 0.7:
            msgs.append(["system", [rng.randrange(10) for _ in range(rng.choice([0, 0, 1, 3]))]])
        for _ in range(rng.randint(1, 3)):
            msgs.append(["user", [rng.randrange(10) for _ in range(rng.randint(0, 4))]])
            if rng.random() < 0.85:
                msgs.append(["assistant", [rng.randrange(10) for _ in range(rng.choice([0, 1, 2, 5]))]])
        specials = dict(_SPECIALS) if rng.random() < 0.5 else {"system": 0, "user": 1, "assistant": 2, "end": 3}
        cases.append((msgs, specials))
    return cases


def _sft_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for k in range(5):
        B, L, V = rng.randint(1, 4), rng.randint(2, 12), rng.randint(2, 20)
        mask = torch.tensor([[int(rng.random() < 0.5) for _ in range(L)] for _ in range(B)])
        if k == 4:
            mask[0] = 0  # a row that trains nothing (a conversation cut before its answer)
        cases.append((randn(rng, B, L - 1, V, scale=rng.choice([1.0, 4.0])), randint(rng, 0, V, B, L), mask))
    return cases


def _logprob_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for k in range(5):
        B, T, V = rng.randint(1, 4), rng.randint(1, 10), rng.randint(2, 30)
        targets = randint(rng, 0, V, B, T)
        keep = torch.tensor([[rng.random() < 0.7 for _ in range(T)] for _ in range(B)])
        if k == 3:
            keep[0] = False  # a row with nothing scored
        cases.append((randn(rng, B, T, V, scale=rng.choice([1.0, 10.0])), torch.where(keep, targets, -1)))
    return cases


def _dpo_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for scale, beta in [(1.0, 0.1), (5.0, 0.5), (20.0, 0.1), (50.0, 2.0), (1.0, rng.choice([0.05, 1.0]))]:
        B = rng.randint(1, 8)
        cases.append(tuple(randn(rng, B, scale=scale, offset=-2 * scale) for _ in range(4)) + (beta,))
    same = randn(rng, 3, scale=10.0, offset=-20.0)
    other = randn(rng, 3, scale=10.0, offset=-20.0)
    cases.append((same, other, same.clone(), other.clone(), 0.3))  # policy == reference: log 2
    return cases


def _advantage_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(4):
        P, G = rng.randint(1, 5), rng.randint(2, 8)
        rows = [[rng.choice([0.0, 0.125, 0.5, 0.75, 1.0]) for _ in range(G)] for _ in range(P)]
        rows[0] = [rows[0][0]] * G  # a group whose answers all scored the same
        cases.append((f32(rows), rng.choice([1e-6, 1e-4, 0.1])))
    cases.append((randn(rng, 3, 6), 1e-6))
    return cases


def _poem(rng: random.Random, heads: str) -> str:
    lines = [h + "".join(rng.choice(_HAN) for _ in range(4)) for h in heads]
    return f"{lines[0]}，{lines[1]}。{lines[2]}，{lines[3]}。"


def _acrostic_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for k in range(10):
        heads = "".join(rng.choice(_HAN) for _ in range(4))
        poem = _poem(rng, heads)
        broken = [
            poem,
            poem[:7] + rng.choice(_HAN) + poem[7:],  # line 2 too long
            poem.replace("，", "。", 1),  # punctuation swapped
            poem[:-1],  # the last 。 missing
            poem[:3] + "a" + poem[4:],  # not a Chinese character
            poem + "\n",  # a trailing newline
            poem + _poem(rng, heads)[:12],  # a fifth and sixth line
            _poem(rng, "".join(rng.choice(_HAN) for _ in range(4))),  # other heads
            "，。" + poem,  # empty pieces before the first line
            "".join(rng.choice(_HAN) for _ in range(rng.randint(0, 8))),  # no punctuation at all
        ][k]
        cases.append((broken, heads))
    return cases


SET = ExerciseSet(
    name="09_assistant",
    exercises=(
        Exercise(
            id="render_mask", points=2, forbidden=forbid(library=_ALIGN),
            public=(
                Case(([["system", [1, 2]], ["user", [3]], ["assistant", [4, 5]]], _SPECIALS),
                     [[10, 1, 2, 13, 11, 3, 13, 12, 4, 5, 13], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]],
                     note="one turn: the answer and its end token are trained, not the header"),
                Case(([["system", []], ["user", [3, 3]], ["assistant", [4]], ["user", [5]], ["assistant", []]], _SPECIALS),
                     [[11, 3, 3, 13, 12, 4, 13, 11, 5, 13, 12, 13], [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1]],
                     note="an empty system prompt is left out; two turns, the second answer empty"),
            ),
            draw=_render_inputs,
            describe_grading="1 to 7 messages, empty system prompts and empty answers, conversations ending "
            "with a user turn, two sets of special ids",
        ),
        Exercise(
            id="masked_sft_loss", points=2, forbidden=forbid("negative log-likelihood", library=(*_ALIGN, _SCORER)),
            **TOL_FLOAT32_SUMS,
            public=(
                Case((torch.log(f32([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]])), i64([[2, 0, 1, 2]]),
                      i64([[0, 0, 1, 1]])), torch.tensor(0.3669845461845398),
                     note="-(log 0.8 + log 0.6) / 2: the first target is the prompt's"),
                Case((f32([[[1.0, 0.0], [0.0, 2.0]], [[0.5, 0.5], [3.0, -1.0]]]), i64([[0, 1, 1], [1, 0, 0]]),
                      i64([[0, 1, 1], [0, 0, 1]])), torch.tensor(0.48611322045326233),
                     note="two rows, three trained tokens: each counts once"),
                Case((f32([[[1.0, 0.0], [0.0, 2.0]], [[0.5, 0.5], [3.0, -1.0]]]), i64([[0, 1, 1], [1, 0, 0]]),
                      i64([[1, 0, 0], [1, 0, 0]])), torch.tensor(0.0), note="no trained target: 0"),
            ),
            draw=_sft_inputs,
            describe_grading="random (B, L, V) up to (4, 12, 20), logits scaled 1x and 4x, random masks, "
            "a row that trains nothing",
        ),
        Exercise(
            id="sequence_logprob", points=1, forbidden=forbid("negative log-likelihood", library=(*_ALIGN, _SCORER)),
            **TOL_FLOAT32_SUMS,
            public=(
                Case((torch.log(f32([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]])), i64([[-1, 1, 2]])),
                     f32([-0.7339690923690796]), note="log 0.8 + log 0.6"),
                Case((torch.zeros(2, 3, 4), i64([[0, 1, 2], [-1, -1, -1]])), f32([-4.158883094787598, 0.0]),
                     note="uniform over 4: 3 log(1/4); a row with nothing scored: 0"),
            ),
            draw=_logprob_inputs,
            describe_grading="random (B, T, V) up to (4, 10, 30), logits scaled 1x and 10x, -1 targets "
            "anywhere, a row with nothing scored",
        ),
        Exercise(
            id="dpo_loss", points=2, forbidden=forbid(library=_ALIGN), **TOL_FLOAT32_SUMS,
            public=(
                Case((f32([-1.0]), f32([-3.0]), f32([-2.0]), f32([-2.0]), 0.5), torch.tensor(0.3132616877555847),
                     note="rewards 0.5 and -0.5: log(1 + e^-1)"),
                Case((f32([-5.0, -7.0]), f32([-6.0, -2.0]), f32([-5.0, -7.0]), f32([-6.0, -2.0]), 0.1),
                     torch.tensor(0.6931471824645996), note="policy == reference: log 2"),
                Case((f32([-10.0, -4.0]), f32([-2.0, -9.0]), f32([-12.0, -6.0]), f32([-3.0, -5.0]), 0.2),
                     torch.tensor(0.43071067333221436)),
                Case((f32([-100.0]), f32([0.0]), f32([0.0]), f32([-100.0]), 5.0), torch.tensor(1000.0),
                     note="sigma(-1000) underflows: compute it stably"),
            ),
            draw=_dpo_inputs,
            describe_grading="1 to 8 pairs, log-probabilities around -2 to -100, beta 0.05 to 2, "
            "policy == reference",
        ),
        Exercise(
            id="group_advantages", points=1, forbidden=forbid(library=_ALIGN), **TOL_FLOAT32_SUMS,
            public=(
                Case((f32([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]]), 1e-6),
                     f32([[0.9999979734420776, -0.9999979734420776, -0.9999979734420776, 0.9999979734420776],
                          [0.0, 0.0, 0.0, 0.0]]), note="mean 0.5, std 0.5; an all-equal group: 0"),
                Case((f32([[1.0, 0.0, 0.0, 0.0], [0.25, 0.75, 1.0, 0.0]]), 1e-4),
                     f32([[1.731650948524475, -0.5772169828414917, -0.5772169828414917, -0.5772169828414917],
                          [-0.6322956085205078, 0.6322956085205078, 1.2645912170410156, -1.2645912170410156]]),
                     note="the population std (divide by G)"),
            ),
            draw=_advantage_inputs,
            describe_grading="1 to 5 groups of 2 to 8 rewards with ties and a constant group, eps 1e-6 to 0.1, "
            "random real rewards",
        ),
        Exercise(
            id="check_acrostic", points=2, forbidden=forbid(library=_ALIGN),
            public=(
                Case((_POEM, "春處夜花"), {"form": True, "heads": 4, "passed": True}),
                Case((_POEM, "春處夜月"), {"form": True, "heads": 3, "passed": False}, note="the last head is wrong"),
                Case((_POEM[:-1], "春處夜花"), {"form": False, "heads": 4, "passed": False}, note="the final 。 is missing"),
                Case(("春眠不覺曉曉，處處聞啼鳥。夜來風雨聲，花落知多少。", "春處夜花"),
                     {"form": False, "heads": 4, "passed": False}, note="a line of six"),
                Case(("", "春處夜花"), {"form": False, "heads": 0, "passed": False}, note="an empty answer"),
            ),
            draw=_acrostic_inputs,
            describe_grading="drawn quatrains broken every way: a long line, swapped or missing punctuation, "
            "a Latin letter, a trailing newline, six lines, other heads, leading punctuation, no punctuation",
        ),
    ),
)
