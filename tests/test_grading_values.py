"""Values as data (encode/decode), the strict comparison, and check() as a student reads it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minilm.grading import check
from minilm.grading.compare import NotData, decode, encode, same


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -5,
        2**70,
        1.5,
        float("nan"),
        float("inf"),
        "",
        "你好🙂\n",
        [1, [2, (3, "x")]],
        (),
        {(1, 2): 3, "a": [1.0]},
        {},
        torch.arange(6, dtype=torch.int64).reshape(2, 3),
        torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
        torch.zeros(0, 3),
        torch.tensor(2.5),  # 0-dim, as F.cross_entropy returns
        torch.tensor([True, False]),
        torch.randn(2).to(torch.bfloat16),
        np.arange(4, dtype=np.float32).reshape(2, 2),
    ],
)
def test_round_trip(value):
    back = decode(encode(value))
    assert type(back) is type(value)
    ok, why = same(value, back)
    assert ok, why


class AlwaysEqual:
    def __eq__(self, other):
        return True


class IntLike(int):
    def __eq__(self, other):
        return True


@pytest.mark.parametrize(
    "value",
    [
        AlwaysEqual(),
        IntLike(3),
        [1, AlwaysEqual()],
        {"k": IntLike(1)},
        type("MyFloat", (np.float64,), {"__eq__": lambda self, other: True})(1.0),
        torch.nn.Parameter(torch.zeros(2)),
        object(),
        {1, 2},
    ],
)
def test_anything_but_plain_data_is_refused(value):
    with pytest.raises(NotData):
        encode(value)


@pytest.mark.parametrize(
    "data",
    [
        [1, 2],
        {"v": [1]},
        {"t": "list", "v": 3},
        {"t": "dict", "v": [[1]]},
        {"t": "tensor", "dtype": "float32", "shape": [2], "b64": "AAAA"},
        {"t": "tensor", "dtype": "object", "shape": [], "b64": ""},
        {"t": "dict", "v": [[{"t": "list", "v": []}, 1]]},
        {"t": "pickle", "v": "x"},
        {"t": "dict", "v": [[1, "a"], [1.0, "b"]]},  # 1 == 1.0: Python would merge them silently
        {"t": "dict", "v": [[True, "a"], [1, "b"]]},
        {"t": "tensor", "dtype": "float32", "shape": [10**12], "b64": ""},
        {"t": "tensor", "dtype": "float32", "shape": [-1], "b64": ""},
        {"t": "tensor", "dtype": "float32", "shape": [1], "b64": "@@@@"},
        {"t": "ndarray", "dtype": "V8", "shape": [1], "b64": "AAAAAAAAAAA="},
    ],
)
def test_malformed_data_is_refused(data):
    with pytest.raises((NotData, ValueError)):
        decode(data)


def test_dict_keys_are_compared_by_type_and_order_where_asked():
    ok, why = same({(1, 2): 3}, {(1.0, 2.0): 3})
    assert not ok and "(1.0, 2.0)" in why and "by type" in why
    assert not same({True: 1}, {1: 1})[0]
    a, b = {(1, 2): 1, (2, 3): 1}, {(2, 3): 1, (1, 2): 1}
    assert same(a, b)[0]
    ok, why = same(a, b, ordered_keys=True)
    assert not ok and "wrong order" in why
    assert same({"k": [a]}, {"k": [dict(a)]}, ordered_keys=True)[0]
    assert not same({"k": [a]}, {"k": [b]}, ordered_keys=True)[0]  # nested dicts too


def test_same_is_strict_and_explains():
    assert same([1, 2], [1, 2]) == (True, "")
    ok, why = same([1, 2], (1, 2))
    assert not ok and "tuple" in why
    ok, why = same(1, True)
    assert not ok and "bool" in why
    ok, why = same([1, 2, 3], [1, 5, 3])
    assert not ok and "[1]" in why and "5" in why
    ok, why = same({(1, 2): 1}, {(2, 1): 1})
    assert not ok and "missing" in why
    ok, why = same("hello", "help!")
    assert not ok and "character 3" in why
    ok, why = same(torch.zeros(2, 3), torch.zeros(3, 2))
    assert not ok and "(2, 3)" in why and "(3, 2)" in why
    ok, why = same(torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int32))
    assert not ok and "int32" in why
    ok, why = same(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
    assert not ok and "index (1,)" in why
    assert same(1.0, 1.0 + 1e-9)[0] and not same(1.0, 1.1)[0]


def _answers():
    def char_encode(text: str, stoi: dict[str, int]) -> list[int]:
        return [stoi[c] for c in text]

    def char_encode_wrong(text: str, stoi: dict[str, int]) -> list[int]:
        return [stoi[c] + 1 for c in text]

    def char_encode_crash(text: str, stoi: dict[str, int]) -> list[int]:
        return [stoi[c.upper()] for c in text]

    def char_encode_todo(text: str, stoi: dict[str, int]) -> list[int]:
        raise NotImplementedError

    return char_encode, char_encode_wrong, char_encode_crash, char_encode_todo


def test_check_reports_each_case_and_never_claims_more(capsys):
    right, wrong, crash, todo = _answers()
    check("char_encode", right)
    out = capsys.readouterr().out
    assert "3 of 3 public cases passed" in out and out.count("[pass]") == 3
    assert "Only these 3 public cases were run here" in out and "runs them again and 8 further cases" in out
    assert "Not allowed in this exercise (the grader checks): minilm.data.tokenizers" in out

    check("char_encode", wrong)
    out = capsys.readouterr().out
    assert "1 of 3 public cases passed" in out and out.count("[FAIL]") == 2
    assert "expected 0, got 1" in out and "char_encode('abcab', {'a': 0, 'b': 1, 'c': 2})" in out

    check("char_encode", crash)
    out = capsys.readouterr().out
    assert "raised KeyError" in out and "line" in out and "stoi[c.upper()]" in out

    check("char_encode", todo)
    out = capsys.readouterr().out
    assert "not attempted yet" in out and "passed" not in out


def test_check_refuses_unknown_ids():
    with pytest.raises(KeyError, match="known exercises"):
        check("no_such_exercise", print)


def test_floats_compare_by_the_documented_tolerance_whatever_their_type():
    """0.6 from float32 arithmetic, a NumPy number or a 0-d tensor is the answer 0.6 (issue 22)."""
    pred, labels = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([0, 1, 0, 0, 0])
    float32_share = (pred == labels).float().mean().item()
    assert float32_share != 0.6  # 0.6000000238418579
    for got in (float32_share, np.float32(0.6), np.float64(0.6), torch.tensor(0.6), torch.tensor(0.6, dtype=torch.float64)):
        assert same(0.6, decode(encode(got)))[0], got
        assert same({"accuracy": 0.6}, decode(encode({"accuracy": got})))[0], got
    assert same(1.0, 1)[0] and same(torch.tensor(500.0), 500.0)[0]
    assert not same(1.0, True)[0] and not same(0.6, 0.61)[0]
    assert not same(0.6, "0.6")[0] and not same(0.6, [0.6])[0]
    assert same(float("nan"), decode(encode(np.float32("nan"))))[0]
    ok, why = same(0.6, 0.6000001, rtol=1e-9, atol=1e-12)
    assert not ok and "only in the last digits" in why and "rtol 1e-09" in why
    ok, why = same(0.6, 0.7)
    assert not ok and "last digits" not in why
    ok, why = same(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0001]), rtol=1e-7, atol=0.0)
    assert not ok and "only in the last digits" in why


def test_numpy_numbers_travel_as_plain_numbers():
    assert encode(np.float64(2.5)) == encode(2.5) and encode(np.int64(3)) == 3
    assert type(decode(encode(np.float32(1.5)))) is float and type(decode(encode(np.int32(2)))) is int
    assert same(3, decode(encode(np.int64(3))))[0]


def _layouts():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    return {
        "expanded (stride 0)": torch.tensor([1.0, 2.0]).expand(3, 2),
        "expanded 0-d": torch.tensor(1.5).expand(4),
        "transposed": base.T,
        "sliced": base[:, ::2],
        "offset view": base.flatten()[3:7],
        "unfolded (overlapping)": torch.arange(10.0).unfold(0, 3, 1),
        "as_strided": torch.arange(6.0).as_strided((3, 3), (1, 1)),
        "channels_last": torch.arange(24.0).reshape(1, 2, 3, 4).to(memory_format=torch.channels_last),
        "negated view": torch._neg_view(base),
        "requires_grad": base.clone().requires_grad_() * 2,
        "bool expanded": torch.tensor([True]).expand(5),
        "numpy broadcast": np.broadcast_to(np.arange(3.0), (4, 3)),
        "numpy transposed": np.arange(6.0).reshape(2, 3).T,
    }


@pytest.mark.parametrize("name", list(_layouts()))
def test_values_of_any_stride_and_layout_compare(name):
    value = _layouts()[name]
    plain = value.detach().contiguous().clone() if isinstance(value, torch.Tensor) else np.ascontiguousarray(value)
    if isinstance(value, torch.Tensor) and value.is_neg():
        plain = plain.resolve_neg()
    assert same(plain, decode(encode(value)))[0]
    assert same(plain, value if isinstance(value, np.ndarray) else value.detach())[0]
    changed = plain.copy() if isinstance(plain, np.ndarray) else plain.clone()
    flat = changed.reshape(-1)
    flat[0] = not flat[0] if changed.dtype in (bool, torch.bool) else flat[0] + 1
    ok, why = same(changed, decode(encode(value)))
    assert not ok and "differ" in why


@pytest.mark.parametrize("make", [lambda: torch.empty(2, device="meta"), lambda: torch.eye(2).to_sparse_csr(),
                                  lambda: torch.randn(2, 2).to_mkldnn(), lambda: torch.zeros(2, dtype=torch.complex64)],
                         ids=["meta", "sparse_csr", "mkldnn", "complex"])
def test_tensors_without_plain_values_are_refused_with_a_reason(make):
    with pytest.raises(NotData, match="return an ordinary"):
        encode(make())


def test_check_accepts_an_expanded_answer(capsys):
    from minilm.grading.checker import run_case
    from minilm.grading.sets import find_exercise

    ex = find_exercise("top_p_mask")
    case = next(c for c in ex.public if c.args[1] == 1.0)  # keep everything: a broadcast True is right
    assert run_case(ex, lambda p, top_p: torch.tensor(True).expand(*p.shape), case.args, case.expected) == ("pass", "")


def test_check_lists_a_long_forbidden_set_briefly(capsys):
    from minilm.grading.sets import find_exercise

    check("cross_entropy", lambda z, t: z)
    out = capsys.readouterr().out
    n = len(find_exercise("cross_entropy").forbidden)
    assert n > 6 and f"and {n - 6} more that compute the same" in out
    assert "find_exercise('cross_entropy').forbidden" in out and "torch.nn.functional.cross_entropy" in out
