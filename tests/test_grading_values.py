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
        np.int64(3),
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
    assert "Only these 3 public cases were run here" in out and "8 further cases" in out
    assert "Not allowed in this exercise (the grader checks): minilm.tokenizers" in out

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
