"""Exercise set 03, RNN and LSTM (solutions/03_rnn_lstm.ipynb; taught in notebook 03).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: random weights and states of random sizes, gradients above and below the clipping threshold,
token streams of lengths that do and do not divide evenly.
"""

from __future__ import annotations

import random

import torch

from ..spec import TOL_FLOAT32_SUMS, Case, Exercise, ExerciseSet, seeded
from .builders import f32, ramp, randint, randn, uniform
from .equivalents import forbid


def _sizes(rng: random.Random) -> list[tuple[int, int, int]]:
    """(B, I, H) triples: tiny, odd and a few typical."""
    return [(1, 1, 1), (2, 3, 4), (rng.randint(1, 6), rng.randint(1, 10), rng.randint(1, 10)), (8, 16, 32),
            (rng.randint(1, 4), 27, rng.randint(2, 24))]


def _state(rng: random.Random, B: int, H: int) -> torch.Tensor:
    return seeded(rng, f"torch.randn({B}, {H}).tanh()")


def _rnn_weights(rng: random.Random, I: int, H: int) -> tuple[torch.Tensor, ...]:
    k = H**-0.5
    return uniform(rng, I, H, k=k), uniform(rng, H, H, k=k), uniform(rng, H, k=k)


def _rnn_step_inputs(rng: random.Random) -> list[tuple]:
    return [(randn(rng, B, I), _state(rng, B, H), *_rnn_weights(rng, I, H)) for B, I, H in _sizes(rng)]


def _rnn_forward_inputs(rng: random.Random) -> list[tuple]:
    return [(randn(rng, B, T, I), _state(rng, B, H), *_rnn_weights(rng, I, H))
            for (B, I, H), T in zip(_sizes(rng), [1, 5, rng.randint(2, 12), 16, rng.randint(2, 30)])]


def _lstm_step_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, I, H in _sizes(rng):
        k = H**-0.5
        weights = (uniform(rng, 4 * H, I, k=k), uniform(rng, 4 * H, H, k=k), uniform(rng, 4 * H, k=k),
                   uniform(rng, 4 * H, k=k))
        cases.append((randn(rng, B, I), _state(rng, B, H), randn(rng, B, H, scale=2.0), *weights))
    return cases


def _clip_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n_tensors, scale, max_norm in [(1, 1.0, 0.5), (3, 0.01, 1.0), (rng.randint(2, 6), 5.0, 1.0),
                                       (rng.randint(2, 6), 0.1, rng.choice([0.25, 2.0, 10.0])), (4, 100.0, 1.0),
                                       (2, 1.0, 1e6)]:
        shapes = [[rng.randint(1, 5) for _ in range(rng.randint(1, 3))] for _ in range(n_tensors)]
        cases.append(([randn(rng, *shape, scale=scale) for shape in shapes], max_norm))
    return cases


def _tbptt_inputs(rng: random.Random) -> list[tuple]:
    return [(randint(rng, 0, 65, N), B, T) for N, B, T in [
        (10, 2, 2), (11, 2, 3), (rng.randint(20, 60), rng.randint(1, 4), rng.randint(1, 8)), (100, 4, 8),
        (rng.randint(8, 40), 3, 50), (rng.randint(30, 80), 5, rng.randint(2, 6))]]


_W = (ramp(2, 3, scale=0.8), ramp(3, 3, scale=0.5), f32([0.1, 0.0, -0.1]))  # W_xh (2, 3), W_hh, b
_LSTM = (ramp(8, 2, scale=0.7), ramp(8, 2, scale=0.4), ramp(8, scale=0.2), ramp(8, scale=0.1))
_RECURRENT = forbid("recurrent cell", library="minilm.models.rnn")

SET = ExerciseSet(
    name="03_rnn_lstm",
    exercises=(
        Exercise(
            id="rnn_step", points=1, forbidden=_RECURRENT, **TOL_FLOAT32_SUMS,
            public=(
                Case((f32([[1.0, -1.0]]), f32([[0.5, 0.0, -0.5]]), *_W), f32([[0.89058357, 0.90044415, 0.16709702]])),
                Case((f32([[1.0, -1.0], [0.0, 2.0]]), torch.zeros(2, 3), *_W),
                     f32([[0.88064164, 0.90416354, 0.23211941], [-0.80437464, -0.91115397, -0.49831709]]),
                     note="a batch of two, from a zero state"),
            ),
            draw=_rnn_step_inputs,
            describe_grading="random inputs, states and weights, batch up to 8, sizes 1 to 32 (checked against nn.RNNCell)",
        ),
        Exercise(
            id="rnn_forward", points=2, forbidden=_RECURRENT, **TOL_FLOAT32_SUMS,
            public=(
                Case((ramp(1, 3, 2, scale=1.0), torch.zeros(1, 3), *_W),
                     f32([[[0.11541527, -0.085232712, -0.20529921], [0.58271962, 0.58826649, 0.062766716],
                           [-0.32136381, -0.43761468, -0.17220224]]])),
                Case((f32([[[1.0, -1.0]]]), f32([[0.5, 0.0, -0.5]]), *_W), f32([[[0.89058357, 0.90044415, 0.16709702]]]),
                     note="one step: the same as rnn_step"),
                Case((ramp(2, 2, 2, scale=2.0), f32([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]]), *_W),
                     f32([[[0.19430289, -0.072774947, -0.26881418], [0.84181827, 0.87562865, 0.23425719]],
                          [[-0.69248331, -0.74712443, -0.18928993], [-0.27686334, -0.5457961, -0.36049294]]])),
            ),
            draw=_rnn_forward_inputs,
            describe_grading="random sequences of 1 to 30 steps and random weights (checked against nn.RNN)",
        ),
        Exercise(
            id="lstm_step", points=2, forbidden=_RECURRENT, **TOL_FLOAT32_SUMS,
            public=(
                Case((f32([[1.0, -1.0]]), f32([[0.5, -0.5]]), f32([[1.0, 0.0]]), *_LSTM),
                     (f32([[0.23953015, -0.25196004]]), f32([[0.64482462, -0.34557644]]))),
                Case((ramp(3, 2, scale=2.0), torch.zeros(3, 2), torch.zeros(3, 2), *_LSTM),
                     (f32([[-0.34756368, -0.22858156], [0.040924918, 0.13955835], [-0.039976727, 0.1885837]]),
                      f32([[-0.41991413, -0.35692599], [0.12999314, 0.20981662], [-0.12564474, 0.5339371]])),
                     note="a batch of three, from zero states"),
            ),
            draw=_lstm_step_inputs,
            describe_grading="random inputs, states and weights, batch up to 8, sizes 1 to 32 (checked against nn.LSTMCell)",
        ),
        Exercise(
            id="clip_grad_norm", points=1, forbidden=forbid("gradient clipping", library="minilm.training"),
            rtol=1e-5, atol=1e-7,
            public=(
                Case(([f32([3.0, 4.0])], 1.0), [f32([0.5999999, 0.79999983])], note="norm 5 clipped to 1"),
                Case(([f32([1.0, 2.0]), f32([[2.0], [4.0]])], 2.5),
                     [f32([0.49999988, 0.99999976]), f32([[0.99999976], [1.9999995]])],
                     note="one norm over all tensors: 5"),
                Case(([f32([0.3, 0.4]), f32([[0.0]])], 1.0), [f32([0.30000001, 0.40000001]), f32([[0.0]])],
                     note="below max_norm: unchanged"),
                Case(([f32([1.0, 2.0]), ramp(2, 1, 2, scale=3.0)], 1.0),
                     [f32([0.20349744, 0.40699488]), f32([[[0.51371157, 0.5551191]], [[0.086152680, -0.4620221]]])],
                     note="a 3-D tensor counts entry by entry too"),
            ),
            draw=_clip_inputs,
            describe_grading="1 to 6 tensors of random shapes (1-D to 3-D), norms below and far above max_norm "
            "(checked against torch.nn.utils.clip_grad_norm_)",
        ),
        Exercise(
            id="tbptt_batches", points=2, forbidden=forbid(library="minilm.data.batching"),
            public=(
                Case((torch.arange(10), 2, 2),
                     [(torch.tensor([[0, 1], [4, 5]]), torch.tensor([[1, 2], [5, 6]])),
                      (torch.tensor([[2, 3], [6, 7]]), torch.tensor([[3, 4], [7, 8]]))]),
                Case((torch.arange(11), 2, 3),
                     [(torch.tensor([[0, 1, 2], [5, 6, 7]]), torch.tensor([[1, 2, 3], [6, 7, 8]])),
                      (torch.tensor([[3, 4], [8, 9]]), torch.tensor([[4, 5], [9, 10]]))],
                     note="the last chunk is shorter"),
                Case((torch.arange(7) * 10, 3, 5),
                     [(torch.tensor([[0, 10], [20, 30], [40, 50]]), torch.tensor([[10, 20], [30, 40], [50, 60]]))],
                     note="T longer than a row: one chunk"),
            ),
            draw=_tbptt_inputs,
            describe_grading="random token streams of 10 to 100 tokens, 1 to 5 rows, T from 1 to 50",
        ),
    ),
)
