"""A forbidden function is unusable wherever it runs while an exercise is graded, by construction
(minilm.grading.standins, minilm.grading.copies, the sandbox's seccomp filter), not only where
the profile hook looks:

- generically, for every forbidden name of every exercise of sets 01-08: refused from a thread and
  through functools.partial (a C caller), in a process with the grader's stand-ins installed;
- a hostile submission per class, for sets 06, 07 and 08 (built here, graded with those of sets
  02-05 by tests/test_grading_hostile_sets.py, in the sandbox at the level the machine gives and
  at the weaker one): a thread, a raw `_thread`, a process forked in an earlier cell,
  `functools.partial`/`map` (C callers), the library's source pasted a few lines lower, the
  library's module file exec'd, and a renamed, reformatted copy. Each scores 0 on the exercise it
  attacks and the rest of its notebook scores.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from minilm.grading import forbid
from minilm.grading.sets import get_set

ROOT = Path(__file__).resolve().parents[1]
SETS = {"06": "06_generation", "07": "07_fine_tuning", "08": "08_bias"}

GENERIC = r'''
import functools, json, sys, threading, types
from minilm.grading import forbid, standins
from minilm.grading.sets import all_sets

exercises = [ex for s in all_sets() for ex in s.exercises]
standins.install(forbid.prepare(exercises))
watcher = forbid.Watcher()
watcher.watch_new_threads()
report = {"checked": 0, "not_refused": [], "names": 0}


def callables_of(dotted):
    """What a student reaches through the name, after the stand-ins: the object, a module's
    functions and classes, a class's own functions."""
    try:
        obj = forbid._import(dotted)
    except forbid.NotInstalled:
        return []
    if isinstance(obj, types.ModuleType):
        prefix = obj.__name__
        out = []
        for mod in [m for k, m in list(sys.modules.items()) if k == prefix or k.startswith(prefix + ".")]:
            for name, v in list(vars(mod).items()):
                if isinstance(v, (types.FunctionType, type)) and getattr(v, "__module__", None) == mod.__name__:
                    out.append((f"{mod.__name__}.{name}", getattr(mod, name)))
        return [x for o in out for x in expand(*o)]
    return expand(dotted, obj)


def expand(label, obj):
    if isinstance(obj, type):
        return [(f"{label}.{k}", getattr(obj, k)) for k, v in vars(obj).items()
                if isinstance(v, (types.FunctionType, staticmethod, classmethod)) and not isinstance(getattr(obj, k), type)]
    return [(label, obj)]


def refused(banned, fn):
    try:
        forbid.call_watched(watcher, banned, fn)
    except forbid.NotAllowed:
        return True
    except BaseException:
        return False
    return False


for ex in exercises:
    banned = forbid.resolve(tuple(ex.forbidden))
    for dotted in ex.forbidden:
        report["names"] += 1
        for label, target in callables_of(dotted):
            def in_thread(target=target):
                box = {}
                def run():
                    try:
                        target()
                    except BaseException as e:
                        box["e"] = e
                t = threading.Thread(target=run)
                t.start()
                t.join()
                if "e" in box and isinstance(box["e"], forbid.NotAllowed):
                    raise box["e"]
            for how, fn in (("thread", in_thread), ("partial", functools.partial(target))):
                report["checked"] += 1
                if not refused(banned, fn):
                    report["not_refused"].append(f"{ex.id}: {label} via {how}")
# outside graded calls the stand-ins only pass calls on
import torch, torch.nn.functional as F
x = torch.tensor([[1.0, 2.0, 3.0]])
report["outside"] = [F.softmax(x, -1).sum().item(), x.softmax(-1).sum().item(), int(torch.bincount(torch.tensor([1, 1])).sum())]
print(json.dumps(report))
'''


def test_every_forbidden_name_of_sets_01_to_08_refuses_from_a_thread_and_a_c_caller():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", GENERIC], check=False, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["names"] > 300 and report["checked"] > 2000, report["checked"]
    assert report["not_refused"] == [], report["not_refused"][:40]
    assert report["outside"] == [1.0, 1.0, 2]


def test_a_name_whose_package_is_not_installed_is_skipped_but_a_typo_is_an_error(caplog):
    with caplog.at_level("DEBUG", logger="minilm.grading.forbid"):
        banned = forbid.resolve(("surely_not_installed_pkg.metrics.confusion_matrix", "torch.softmax"))
    assert banned.skipped == ["surely_not_installed_pkg.metrics.confusion_matrix"]
    assert "surely_not_installed_pkg" in caplog.text and "not installed" in caplog.text
    with pytest.raises(ValueError, match="torch.nn.functional.sofmax"):
        forbid.resolve(("torch.nn.functional.sofmax",))


WITHOUT_SKLEARN = r'''
import importlib.machinery, importlib.util, json, sys

find = importlib.machinery.PathFinder.find_spec


def not_sklearn(name, path=None, target=None):  # as with only the `grade` extra installed
    return None if name.split(".")[0] == "sklearn" else find(name, path, target)


importlib.machinery.PathFinder.find_spec = not_sklearn
from minilm.grading import forbid, standins
from minilm.grading.sets import all_sets

banned = forbid.prepare([ex for s in all_sets() for ex in s.exercises])  # what the zygote does
standins.install(banned)
skipped = sorted({n for b in banned for n in b.skipped})
importable = [n for n in skipped if importlib.util.find_spec(n.split(".")[0]) is not None]
print(json.dumps({"skipped": skipped, "importable": importable}))
'''


def test_the_sandbox_starts_without_scikit_learn_and_skips_only_its_names():
    """Issue 21: with only the `grade` extra, set 07's sklearn names stopped the zygote at start-up."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_SKLEARN], check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert "sklearn.metrics.confusion_matrix" in got["skipped"], got
    assert got["importable"] == [], got  # only names whose package is really missing are skipped


FILTERED = r'''
import json, os, subprocess, sys, threading
from minilm.grading import seccomp

seccomp.install(seccomp.signal_guard_rules(os.getpid()) + seccomp.no_process_rules())  # the "process" level
got = {}
box = []
t = threading.Thread(target=lambda: box.append(sum(range(10))))
t.start()
t.join()
got["thread"] = box == [45]
for name, start in {"fork": os.fork, "subprocess": lambda: subprocess.run(["true"]),
                    "posix_spawn": lambda: os.posix_spawn("/bin/true", ["true"], {})}.items():
    try:
        pid = start()
        if pid == 0:
            os._exit(0)
        got[name] = "started"
    except OSError as e:
        got[name] = type(e).__name__
print(json.dumps(got))
'''


@pytest.mark.skipif(sys.platform != "linux", reason="seccomp is Linux only")
def test_the_childs_filter_lets_threads_start_but_no_process():
    from minilm.grading import seccomp

    if not seccomp.available():  # pragma: no cover
        pytest.skip("no seccomp syscall table for this architecture")
    done = subprocess.run([sys.executable, "-c", FILTERED], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {"thread": True, "fork": "PermissionError", "subprocess": "PermissionError",
                   "posix_spawn": "PermissionError"}, got


OUT_OF_MEMORY = r'''
import json, os, random, struct
from minilm.grading.child import run_job
from minilm.grading.compare import encode
from minilm.grading.sets import get_set

s = get_set("01")
cells = ["def char_encode(text, stoi):\n    raise MemoryError()\n",
         "def char_decode(ids, itos):\n    return ''.join(itos[i] for i in ids)\n"]
exercises = [{"id": i, "args": [encode(a) for a in s.get(i).grading(random.Random(1))]} for i in ("char_encode", "char_decode")]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    run_job({"set": "01", "cells": cells, "exercises": exercises}, w, 20.0, 45.0)
    os._exit(0)
os.close(w)
data = b""
while chunk := os.read(r, 1 << 20):
    data += chunk
os.waitpid(pid, 0)
last = None
while data:
    n = struct.unpack(">I", data[:4])[0]
    last, data = json.loads(data[4 : 4 + n]), data[4 + n :]
print(json.dumps({k: [c.get("kind", "value") for c in v["cases"]] for k, v in last["exercises"].items()}))
'''


def test_an_answer_out_of_memory_is_stopped_at_its_first_memory_error():
    """The remaining cases of that exercise are not run (they would fail the same way and use up the
    time, turning `memory` into `timeout`); the next exercise is graded in full."""
    done = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    kinds = json.loads(done.stdout.strip().splitlines()[-1])
    assert kinds["char_encode"] == ["memory"]
    n = get_set("01").get("char_decode").n_grading()
    assert kinds["char_decode"] == ["value"] * n


def test_a_copy_is_found_whatever_its_names_lines_and_formatting_and_a_near_miss_is_not():
    from minilm.generation import sampling
    from minilm.grading import copies

    banned = forbid.resolve(("minilm.generation.sampling.top_k_filter",))
    index = copies.Index(banned.codes)

    def compiled(source: str):
        scope: dict = {}
        exec(compile(source, "<cell 3>", "exec"), scope)  # noqa: S102 - the test's own text
        return next(v for k, v in scope.items() if callable(v) and not k.startswith("__") and k != "T")

    pasted = "\n\n\n" + _source("minilm.generation.sampling.top_k_filter")  # three lines lower
    renamed = (
        "import torch as T\ndef mine(scores, kk):\n    'my own'\n"
        "    thr = T.topk(scores, min(kk, scores.size(-1)),\n                 dim=-1).values[:, [-1]]\n"
        "    return scores.masked_fill(scores < thr, float('-inf'))  # a comment\n"
    )
    near_miss = renamed.replace("scores < thr", "scores <= thr")
    assert index.match(compiled(pasted).__code__)
    assert "top_k_filter" in index.match(compiled(renamed).__code__)
    assert index.match(compiled(near_miss).__code__) is None
    assert index.match(sampling.top_k_filter.__code__) is None  # the library's own code is no copy
    assert copies.scan([compiled(renamed)], index, copies.library_modules())


# ---- hostile submissions, built from the reference notebook: (exercise attacked, extra cell, answer)
def _source(dotted: str, shift: int = 0) -> str:
    module, name = dotted.rsplit(".", 1)
    __import__(module)
    return "\n" * shift + textwrap.dedent(inspect.getsource(getattr(sys.modules[module], name)))


FORK_SERVER = '''import os, pickle, struct
import torch, torch.nn.functional as F

def _serve(compute):
    """A process forked now that computes later, for the answer: the library's function outside the grader's reach."""
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()  # the sandbox refuses it: this cell fails and the answer has no server
    if pid == 0:
        while True:
            n = struct.unpack(">I", os.read(req_r, 4))[0]
            args = pickle.loads(os.read(req_r, n))
            out = pickle.dumps(compute(*args))
            os.write(rep_w, struct.pack(">I", len(out)) + out)
    def ask(*args):
        data = pickle.dumps(args)
        os.write(req_w, struct.pack(">I", len(data)) + data)
        n = struct.unpack(">I", os.read(rep_r, 4))[0]
        return pickle.loads(os.read(rep_r, n))
    return ask

SERVER = None
SERVER = _serve({compute})
'''

THREAD = '''import threading
import torch, torch.nn.functional as F

def {name}({params}):
    box = {{}}
    def work():
        box["out"] = {expr}
    t = threading.Thread(target=work)
    t.start()
    t.join()
    return {result}
'''

RAW_THREAD = '''import _thread
import torch, torch.nn.functional as F, numpy as np

def {name}({params}):
    box = {{}}
    lock = _thread.allocate_lock()
    lock.acquire()
    def work():
        try:
            box["out"] = {expr}
        finally:
            lock.release()
    _thread.start_new_thread(work, ())
    lock.acquire()
    return {result}
'''

HOSTILE = {
    "06": {
        "kv": ("kv_attention_step", "q, k_new, v_new, k_cache, v_cache"),
        "expr": "F.scaled_dot_product_attention(q, torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2))",
        "result": 'box["out"], torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)',
        "compute": "lambda q, k, v: F.scaled_dot_product_attention(q, k, v)",
        "forked": "    k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)\n    return SERVER(q, k, v), k, v\n",
        "partial": "import functools\nimport torch, torch.nn.functional as F\n\ndef kv_attention_step(q, k_new, v_new, k_cache, v_cache):\n"
                   "    k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)\n"
                   "    return functools.partial(F.scaled_dot_product_attention, dropout_p=0.0)(q, k, v), k, v\n",
        "map": ("int8_quantize", ("import torch\n\ndef int8_quantize(w):\n"
                "    scale = w.abs().amax(dim=1) / 127.0\n    scale = torch.where(scale > 0, scale, torch.ones_like(scale))\n"
                "    zero = torch.zeros(w.shape[0], dtype=torch.int64)\n"
                "    qt = next(map(torch.quantize_per_channel, [w], [scale.double()], [zero], [0], [torch.qint8]))\n"
                "    return qt.int_repr(), scale\n")),
        "copy": ("top_k_filter", "minilm.generation.sampling.top_k_filter", "minilm.generation.sampling",
                 ("import torch as T\n\n\ndef top_k_filter(scores, kk):\n"
                 "    threshold = T.topk(scores, min(kk, scores.size(-1)), dim=-1).values[\n        :, [-1]\n    ]\n"
                 "    return scores.masked_fill(\n        scores < threshold,\n        float('-inf'),\n    )\n")),
    },
    "07": {
        "kv": ("accuracy_confusion", "pred, labels, n_classes"),
        "expr": "(labels * n_classes + pred).bincount(minlength=n_classes * n_classes).reshape(n_classes, n_classes)",
        "result": '{"accuracy": (pred == labels).double().mean().item(), "confusion": box["out"].tolist()}',
        "compute": "lambda x, w, b: F.linear(x, w, b)",
        "forked_for": ("lora_forward", "x, W, b, A, B, alpha"),
        "forked": "    return SERVER(x, W, b) + (alpha / A.shape[0]) * ((x @ A.T) @ B.T)\n",
        "partial": "import functools\nimport torch, torch.nn.functional as F\n\ndef lora_forward(x, W, b, A, B, alpha):\n"
                   "    base = functools.partial(F.linear, weight=W, bias=b)\n"
                   "    return base(x) + (alpha / A.shape[0]) * ((x @ A.T) @ B.T)\n",
        "map": ("accuracy_confusion", ("import torch\n\ndef accuracy_confusion(pred, labels, n_classes):\n"
                "    counts = next(map(torch.bincount, [labels * n_classes + pred], [None], [n_classes * n_classes]))\n"
                '    return {"accuracy": (pred == labels).double().mean().item(),\n'
                '            "confusion": counts.reshape(n_classes, n_classes).tolist()}\n')),
        "copy": ("last_token_pool", "minilm.finetune.classifier.last_token_pool", "minilm.finetune.classifier",
                 ("import torch as tt\n\n\ndef need_one(m):\n    if not bool(m.any(dim=1).all()):\n"
                 "        raise ValueError('no real token')\n\n\ndef last_token_pool(hidden, m):\n"
                 "    need_one(m)\n    n = m.shape[1]\n    idx = (tt.arange(n, device=m.device) * m).argmax(dim=1)\n"
                 "    return hidden[tt.arange(hidden.shape[0], device=hidden.device), idx]\n")),
    },
    "08": {
        "kv": ("sentence_log_likelihood", "logits, targets"),
        "expr": '-F.cross_entropy(logits, targets, reduction="sum")',
        "result": 'float(box["out"])',
        "compute": 'lambda lg, t: -F.cross_entropy(lg, t, reduction="sum")',
        "forked": "    return float(SERVER(logits, targets))\n",
        "partial": "import functools\nimport torch, torch.nn.functional as F\n\ndef sentence_log_likelihood(logits, targets):\n"
                   '    return -float(functools.partial(F.cross_entropy, reduction="sum")(logits, targets))\n',
        "map": ("sentence_log_likelihood", ("import torch, torch.nn.functional as F\n\ndef sentence_log_likelihood(logits, targets):\n"
                "    lp = next(map(F.log_softmax, [logits], [-1]))\n    return float(lp[torch.arange(len(targets)), targets].sum())\n")),
        "copy": ("weat_effect_size", "minilm.bias.weat.effect_size", "minilm.bias.weat",
                 ("import numpy\n\n\ndef _u(z):\n    z = numpy.asarray(z, dtype=numpy.float64)\n"
                 "    return z / numpy.linalg.norm(z, axis=1, keepdims=True)\n\n\n"
                 "def _assoc(w, a, b):\n    w, a, b = _u(w), _u(a), _u(b)\n"
                 "    return (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)\n\n\n"
                 "def _chk(named):\n    for nm, vv in named.items():\n        if len(vv) == 0:\n"
                 "            raise ValueError('empty')\n\n\n"
                 "def es(p, q, r, s):\n    _chk({'X': p, 'Y': q, 'A': r, 'B': s})\n"
                 "    sp, sq = _assoc(p, r, s), _assoc(q, r, s)\n"
                 "    return float((sp.mean() - sq.mean()) / numpy.concatenate([sp, sq]).std(ddof=1))\n")),
    },
}


def _params(set_id: str, ex_id: str) -> str:
    nb = nbformat.read(ROOT / "solutions" / f"{SETS[set_id]}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.source.startswith(f"# EXERCISE: {ex_id}\n"):
            head = cell.source.split(f"def {ex_id}(", 1)[1]
            return head.split(")", 1)[0]
    raise KeyError(ex_id)


def _wrap_copy(set_id: str, ex_id: str, fn_name: str, body: str) -> str:
    """An answer cell whose exercise function hands the work to `fn_name`, a copy defined in `body`."""
    if set_id == "08":
        return body + f"\n\ndef {ex_id}(X, Y, A, B):\n    return {fn_name}(X.numpy(), Y.numpy(), A.numpy(), B.numpy())\n"
    return body if fn_name == ex_id else body + f"\n\n{ex_id} = {fn_name}\n"


def hostile(set_id: str) -> dict[str, tuple[str, str, str]]:
    """student -> (exercise attacked, extra cell before the exercises or "", answer cell)."""
    h = HOSTILE[set_id]
    ex_id, params = h["kv"]
    fill = {"name": ex_id, "params": params, "expr": h["expr"], "result": h["result"]}
    fork_ex, fork_params = h.get("forked_for", h["kv"])
    copy_ex, twin, module, renamed = h["copy"]
    twin_name = twin.rsplit(".", 1)[1]
    pasted = _wrap_copy(set_id, copy_ex, twin_name, "import numpy as np\nimport torch\n" + _source(twin, shift=3))
    if set_id == "08":
        helpers = "".join(_source(f"{module}.{n}") + "\n\n" for n in ("_unit", "association", "_check_sets"))
        pasted = _wrap_copy(set_id, copy_ex, twin_name, "import numpy as np\n\n\n" + helpers + _source(twin, shift=2))
    exec_file = (f"import sys, types, {module}\n_mod = types.ModuleType('my_copy')\nsys.modules['my_copy'] = _mod\n"
                 f"_ns = _mod.__dict__\n_ns['__package__'] = '{module.rsplit('.', 1)[0]}'  # its relative imports\n"
                 f"exec(compile(open(sys.modules['{module}'].__file__).read(), 'mine.py', 'exec'), _ns)\n"
                 + _wrap_copy(set_id, copy_ex, f"_ns['{twin_name}']", ""))
    return {
        "thread": (ex_id, "", THREAD.format(**fill)),
        "raw_thread": (ex_id, "", RAW_THREAD.format(**fill)),
        "forked_earlier": (fork_ex, FORK_SERVER.replace("{compute}", h["compute"]),
                           f"def {fork_ex}({fork_params}):\n" + h["forked"]),
        "c_caller_partial": (fork_ex if set_id == "07" else ex_id, "", h["partial"]),
        "c_caller_map": (h["map"][0], "", h["map"][1]),
        "pasted_source": (copy_ex, "", pasted),
        "exec_module_file": (copy_ex, "", exec_file),
        "renamed_copy": (copy_ex, "", _wrap_copy(set_id, copy_ex, "es" if set_id == "08" else copy_ex, renamed)),
    }


def _notebook(set_id: str, attacked: str = "", extra: str = "", answer: str = "") -> nbformat.NotebookNode:
    """The reference notebook, its setup and exercise cells only (the demos cost time, not coverage)."""
    nb = nbformat.read(ROOT / "solutions" / f"{SETS[set_id]}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    keep = [code[0]] + [c for c in code if c.source.startswith("# EXERCISE:")]
    if extra:
        keep.insert(1, nbformat.v4.new_code_cell(extra))
    for cell in keep:
        if attacked and cell.source.startswith(f"# EXERCISE: {attacked}\n"):
            cell.source = f"# EXERCISE: {attacked}\n{answer}"
    nb.cells = keep
    return nb


def _write_submissions(set_id: str, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    nbformat.write(_notebook(set_id), folder / "reference.ipynb")
    attacked = {}
    for student, (ex_id, extra, answer) in hostile(set_id).items():
        nbformat.write(_notebook(set_id, ex_id, extra, answer), folder / f"{student}.ipynb")
        attacked[student] = ex_id
    return attacked


def _check_rows(set_id: str, rows: dict[str, tuple[float, dict[str, float], str]], attacked: dict[str, str]) -> None:
    ex_set = get_set(set_id)
    full = {ex.id: float(ex.points) for ex in ex_set.exercises}
    _, points, _ = rows["reference"]
    assert points == full, rows["reference"]
    for student, ex_id in attacked.items():
        _total, points, feedback = rows[student]
        assert points[ex_id] == 0.0, (student, ex_id, feedback)
        assert {k: v for k, v in points.items() if k != ex_id} == {k: v for k, v in full.items() if k != ex_id}, (student, points)
        if student == "forked_earlier":  # the fork itself is refused: the cell says so
            assert "raised PermissionError" in feedback, feedback
        else:
            assert "not allowed in this exercise" in feedback, (student, feedback)
        if student in ("pasted_source", "exec_module_file", "renamed_copy"):
            assert "copy of" in feedback, (student, feedback)


def _others_can_run(path: Path) -> bool:
    """Whether a user other than the owner can reach and run `path` (every parent folder searchable by others):
    the grader's weaker level runs the child under a uid of its own, which needs that."""
    for folder in [*path.parents][::-1]:
        if not folder.stat().st_mode & 0o001:
            return False
    return bool(path.stat().st_mode & 0o005)
