"""Exercise set 03, RNN and LSTM (solutions/03_rnn_lstm.ipynb; taught in notebook 03).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: random weights and states of random sizes, gradients above and below the clipping threshold,
token streams of lengths that do and do not divide evenly.
"""

from __future__ import annotations

import random

import torch

from ..spec import Case, Exercise, ExerciseSet, seeded


def _sizes(rng: random.Random) -> list[tuple[int, int, int]]:
    """(B, I, H) triples: tiny, odd and a few typical."""
    return [
        (1, 1, 1),
        (2, 3, 4),
        (rng.randint(1, 6), rng.randint(1, 10), rng.randint(1, 10)),
        (8, 16, 32),
        (rng.randint(1, 4), 27, rng.randint(2, 24)),
    ]


def _uniform(rng: random.Random, shape: str, k: float) -> torch.Tensor:
    """U(-k, k), as nn.RNN and nn.LSTM initialise their weights."""
    return seeded(rng, f"(torch.rand({shape}) * 2 - 1) * {k!r}")


def _rnn_weights(rng: random.Random, I: int, H: int) -> tuple[torch.Tensor, ...]:
    k = H**-0.5
    return _uniform(rng, f"{I}, {H}", k), _uniform(rng, f"{H}, {H}", k), _uniform(rng, f"{H}", k)


def _rnn_step_inputs(rng: random.Random) -> list[tuple]:
    return [
        (
            seeded(rng, f"torch.randn({B}, {I})"),
            seeded(rng, f"torch.randn({B}, {H}).tanh()"),
            *_rnn_weights(rng, I, H),
        )
        for B, I, H in _sizes(rng)
    ]


def _rnn_forward_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for (B, I, H), T in zip(_sizes(rng), [1, 5, rng.randint(2, 12), 16, rng.randint(1, 30)]):
        cases.append(
            (
                seeded(rng, f"torch.randn({B}, {T}, {I})"),
                seeded(rng, f"torch.randn({B}, {H}).tanh()"),
                *_rnn_weights(rng, I, H),
            )
        )
    return cases


def _lstm_step_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, I, H in _sizes(rng):
        k = H**-0.5
        cases.append(
            (
                seeded(rng, f"torch.randn({B}, {I})"),
                seeded(rng, f"torch.randn({B}, {H}).tanh()"),
                seeded(rng, f"torch.randn({B}, {H}) * 2"),
                _uniform(rng, f"{4 * H}, {I}", k),
                _uniform(rng, f"{4 * H}, {H}", k),
                _uniform(rng, f"{4 * H}", k),
                _uniform(rng, f"{4 * H}", k),
            )
        )
    return cases


def _clip_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n_tensors, scale, max_norm in [
        (1, 1.0, 0.5),
        (3, 0.01, 1.0),
        (rng.randint(1, 6), 5.0, 1.0),
        (rng.randint(2, 6), 0.1, rng.choice([0.25, 2.0, 10.0])),
        (4, 100.0, 1.0),
        (2, 1.0, 1e6),
    ]:
        grads = []
        for _ in range(n_tensors):
            shape = ", ".join(str(rng.randint(1, 5)) for _ in range(rng.randint(1, 3)))
            grads.append(seeded(rng, f"torch.randn({shape}) * {scale!r}"))
        cases.append((grads, max_norm))
    return cases


def _tbptt_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for N, B, T in [
        (10, 2, 2),
        (11, 2, 3),
        (rng.randint(20, 60), rng.randint(1, 4), rng.randint(1, 8)),
        (100, 4, 8),
        (rng.randint(8, 40), 3, 50),
        (rng.randint(30, 80), 5, rng.randint(2, 6)),
    ]:
        cases.append((seeded(rng, f"torch.randint(0, 65, ({N},))"), B, T))
    return cases


def _f(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _ramp(*shape: int, scale: float = 0.1) -> torch.Tensor:
    """Deterministic, varied float32 values: scale * sin(1, 2, 3, ...)."""
    n = 1
    for s in shape:
        n *= s
    return (torch.sin(torch.arange(1, n + 1, dtype=torch.float64)) * scale).float().reshape(shape)


_W = (_ramp(2, 3, scale=0.8), _ramp(3, 3, scale=0.5), _f([0.1, 0.0, -0.1]))  # W_xh (2, 3), W_hh, b
_LSTM = (_ramp(8, 2, scale=0.7), _ramp(8, 2, scale=0.4), _ramp(8, scale=0.2), _ramp(8, scale=0.1))

# what each exercise reimplements, in PyTorch and in the library (a module: all of it)
_RECURRENT = (
    "minilm.models.rnn",
    "torch.nn.modules.rnn",  # nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU, ...
    "torch.rnn_tanh_cell",
    "torch.rnn_tanh",
    "torch.rnn_relu_cell",
    "torch.lstm_cell",
    "torch.lstm",
)
_CLIP = ("torch.nn.utils.clip_grad", "torch.nn.utils.clip_grad_norm_", "torch._foreach_norm", "minilm.training")
_BATCHING = ("minilm.batching",)

SET = ExerciseSet(
    name="03_rnn_lstm",
    exercises=(
        Exercise(
            id="rnn_step",
            forbidden=_RECURRENT,
            points=1,
            public=(
                Case(
                    (_f([[1.0, -1.0]]), _f([[0.5, 0.0, -0.5]]), *_W),
                    _f([[0.89058357, 0.90044415, 0.16709702]]),
                ),
                Case(
                    (_f([[1.0, -1.0], [0.0, 2.0]]), torch.zeros(2, 3), *_W),
                    _f(
                        [
                            [0.88064164, 0.90416354, 0.23211941],
                            [-0.80437464, -0.91115397, -0.49831709],
                        ]
                    ),
                    note="a batch of two, from a zero state",
                ),
            ),
            grading=_rnn_step_inputs,
            describe_grading="random inputs, states and weights, batch up to 8, sizes 1 to 32 (checked against nn.RNNCell)",
            rtol=1e-4,
            atol=1e-5,
        ),
        Exercise(
            id="rnn_forward",
            forbidden=_RECURRENT,
            points=2,
            public=(
                Case(
                    (_ramp(1, 3, 2, scale=1.0), torch.zeros(1, 3), *_W),
                    _f(
                        [
                            [
                                [0.11541527, -0.085232712, -0.20529921],
                                [0.58271962, 0.58826649, 0.062766716],
                                [-0.32136381, -0.43761468, -0.17220224],
                            ]
                        ]
                    ),
                ),
                Case(
                    (_f([[[1.0, -1.0]]]), _f([[0.5, 0.0, -0.5]]), *_W),
                    _f([[[0.89058357, 0.90044415, 0.16709702]]]),
                    note="one step: the same as rnn_step",
                ),
                Case(
                    (_ramp(2, 2, 2, scale=2.0), _f([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]]), *_W),
                    _f(
                        [
                            [
                                [0.19430289, -0.072774947, -0.26881418],
                                [0.84181827, 0.87562865, 0.23425719],
                            ],
                            [
                                [-0.69248331, -0.74712443, -0.18928993],
                                [-0.27686334, -0.5457961, -0.36049294],
                            ],
                        ]
                    ),
                ),
            ),
            grading=_rnn_forward_inputs,
            describe_grading="random sequences of 1 to 30 steps and random weights (checked against nn.RNN)",
            rtol=1e-4,
            atol=1e-5,
        ),
        Exercise(
            id="lstm_step",
            forbidden=_RECURRENT,
            points=2,
            public=(
                Case(
                    (_f([[1.0, -1.0]]), _f([[0.5, -0.5]]), _f([[1.0, 0.0]]), *_LSTM),
                    (_f([[0.23953015, -0.25196004]]), _f([[0.64482462, -0.34557644]])),
                ),
                Case(
                    (_ramp(3, 2, scale=2.0), torch.zeros(3, 2), torch.zeros(3, 2), *_LSTM),
                    (
                        _f(
                            [
                                [-0.34756368, -0.22858156],
                                [0.040924918, 0.13955835],
                                [-0.039976727, 0.1885837],
                            ]
                        ),
                        _f(
                            [
                                [-0.41991413, -0.35692599],
                                [0.12999314, 0.20981662],
                                [-0.12564474, 0.5339371],
                            ]
                        ),
                    ),
                    note="a batch of three, from zero states",
                ),
            ),
            grading=_lstm_step_inputs,
            describe_grading="random inputs, states and weights, batch up to 8, sizes 1 to 32 (checked against nn.LSTMCell)",
            rtol=1e-4,
            atol=1e-5,
        ),
        Exercise(
            id="clip_grad_norm",
            forbidden=_CLIP,
            points=1,
            public=(
                Case(
                    ([_f([3.0, 4.0])], 1.0),
                    [_f([0.5999999, 0.79999983])],
                    note="norm 5 clipped to 1",
                ),
                Case(
                    ([_f([1.0, 2.0]), _f([[2.0], [4.0]])], 2.5),
                    [_f([0.49999988, 0.99999976]), _f([[0.99999976], [1.9999995]])],
                    note="one norm over all tensors: 5",
                ),
                Case(
                    ([_f([0.3, 0.4]), _f([[0.0]])], 1.0),
                    [_f([0.30000001, 0.40000001]), _f([[0.0]])],
                    note="below max_norm: unchanged",
                ),
                Case(
                    ([_f([1.0, 2.0]), _ramp(2, 1, 2, scale=3.0)], 1.0),
                    [_f([0.20349744, 0.40699488]), _f([[[0.51371157, 0.5551191]], [[0.086152680, -0.4620221]]])],
                    note="a 3-D tensor counts entry by entry too",
                ),
            ),
            grading=_clip_inputs,
            describe_grading="1 to 6 tensors of random shapes (1-D to 3-D), norms below and far above max_norm "
            "(checked against torch.nn.utils.clip_grad_norm_)",
            rtol=1e-5,
            atol=1e-7,
        ),
        Exercise(
            id="tbptt_batches",
            forbidden=_BATCHING,
            points=2,
            public=(
                Case(
                    (torch.arange(10), 2, 2),
                    [
                        (torch.tensor([[0, 1], [4, 5]]), torch.tensor([[1, 2], [5, 6]])),
                        (torch.tensor([[2, 3], [6, 7]]), torch.tensor([[3, 4], [7, 8]])),
                    ],
                ),
                Case(
                    (torch.arange(11), 2, 3),
                    [
                        (
                            torch.tensor([[0, 1, 2], [5, 6, 7]]),
                            torch.tensor([[1, 2, 3], [6, 7, 8]]),
                        ),
                        (torch.tensor([[3, 4], [8, 9]]), torch.tensor([[4, 5], [9, 10]])),
                    ],
                    note="the last chunk is shorter",
                ),
                Case(
                    (torch.arange(7) * 10, 3, 5),
                    [
                        (
                            torch.tensor([[0, 10], [20, 30], [40, 50]]),
                            torch.tensor([[10, 20], [30, 40], [50, 60]]),
                        )
                    ],
                    note="T longer than a row: one chunk",
                ),
            ),
            grading=_tbptt_inputs,
            describe_grading="random token streams of 10 to 100 tokens, 1 to 5 rows, T from 1 to 50",
        ),
    ),
)
