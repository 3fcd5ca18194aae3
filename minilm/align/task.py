"""The acrostic task's data and its one metric (notebook 09): instructions made from the Tang corpus, split so
that validation and test instructions come from poems no model saw in pretraining, and the held-out pass
rate of a model answering them.

    splits = acrostic_splits(load_text("tang"), n_val=200, n_test=300)
    rate, answers = pass_rate(model, tok, splits["test"], device)
    gap = pass_gap(passes(dpo_answers, tasks), passes(sft_answers, tasks))  # DPO - SFT, with its interval
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data.batching import train_val_split
from ..finetune.review_gpt import paired_gap
from ..generation.sampling import generate
from .template import END, ChatTokenizer, prompt_ids, render
from .verifier import check, heads_of, lines_of

INSTRUCTION = "五言藏頭詩，{heads}"  # "a five-character acrostic poem, <heads>": every character is in the corpus
ANSWER_TOKENS = 25  # 4 lines x 5 characters + 4 punctuation marks + <|end|>


@dataclass(frozen=True)
class Task:
    """One instruction: the four heads, and a poem of the corpus that answers it (the SFT target)."""

    heads: str  # four characters
    poem: str  # a quatrain: the first four lines of a corpus poem, punctuation included

    def conversation(self, system: str = "", with_answer: bool = False) -> list[dict]:
        """[system?, user(instruction), assistant(poem)?] in the template's message format."""
        msgs = [{"role": "system", "content": system},
                {"role": "user", "content": INSTRUCTION.format(heads=self.heads)}]
        if with_answer:
            msgs.append({"role": "assistant", "content": self.poem})
        return msgs


def quatrain_of(poem: str) -> str:
    """The first two couplets of a corpus poem (a quatrain stays whole; regulated verse loses its second half)."""
    lines = lines_of(poem)
    return f"{lines[0]}，{lines[1]}。{lines[2]}，{lines[3]}。"


def acrostic_splits(text: str, n_val: int, n_test: int, val_fraction: float = 0.1,
                    n_train: int | None = None, test_skip: int = 0) -> dict[str, list[Task]]:
    """{"train", "val", "test"}: tasks from the poems (one per line) of `text`.

    Pretraining (minilm.training.zoo) trains on the first 1 - val_fraction of the text; poems wholly
    inside it give the training tasks, poems wholly after it give the validation tasks (the first n_val)
    and the test tasks (the next n_test), so no model of the course saw a held-out poem. Held-out tasks
    whose heads also head a training task are dropped: a held-out instruction is never seen in training.
    `test_skip`: held-out tasks passed over between validation and test (a test split retired once it was read:
    the next one has never been seen by anyone)."""
    cut = len(train_val_split(text, val_fraction)[0])  # the pretraining split, in characters
    train, held, start = [], [], 0
    for line in text.split("\n"):
        end = start + len(line)
        if line:
            task = Task(heads_of(line), quatrain_of(line))
            if end < cut:
                train.append(task)
            elif start > cut:
                held.append(task)
        start = end + 1
    seen = {t.heads for t in train}
    held = [t for t in held if t.heads not in seen]
    if len(held) < n_val + test_skip + n_test:
        raise ValueError(f"only {len(held)} held-out poems for n_val={n_val} + test_skip={test_skip} + "
                         f"n_test={n_test}")
    first_test = n_val + test_skip
    return {"train": train[:n_train] if n_train else train, "val": held[:n_val],
            "test": held[first_test:first_test + n_test]}


def with_random_heads(tasks: Sequence[Task], fraction: float, alphabet: str, seed: int = 0) -> list[Task]:
    """A copy of `tasks` in which a seeded `fraction` of them have each line's first character replaced by a
    character drawn uniformly from `alphabet` (the heads changed to match): SFT examples that can only be
    answered by copying the heads, rare characters included, not by writing a likely line start."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if fraction and not alphabet:
        raise ValueError("an empty alphabet: give the characters to draw the heads from")
    rng = random.Random(seed)
    out = []
    for task in tasks:
        if rng.random() >= fraction:
            out.append(task)
            continue
        lines = lines_of(task.poem)
        heads = "".join(rng.choice(alphabet) for _ in lines)
        new = [h + line[1:] for h, line in zip(heads, lines, strict=True)]
        out.append(Task(heads, f"{new[0]}，{new[1]}。{new[2]}，{new[3]}。"))
    return out


def sft_example(task: Task, tok: ChatTokenizer, max_len: int, system: str = "") -> tuple[list[int], list[int]]:
    """(ids, mask) of the task's conversation with its poem as the answer, cut to max_len tokens."""
    return render(task.conversation(system, with_answer=True), tok, max_len=max_len)


@torch.no_grad()
def complete(
    model: nn.Module, tok: ChatTokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int = ANSWER_TOKENS,
    temperature: float = 0.0, generator: torch.Generator | None = None, batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> list[list[int]]:
    """The model's answer to each prompt (ids), up to and including its <|end|> when it wrote one.

    Prompts of equal length are decoded together (batches of batch_size, KV cache, stop at <|end|>);
    temperature 0 is greedy. Returns one list of ids per prompt, in order."""
    end = tok.id(END)
    out: list[list[int] | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for idxs in by_len.values():
        for s in range(0, len(idxs), batch_size):
            chunk = idxs[s:s + batch_size]
            x = torch.tensor([list(prompts[i]) for i in chunk], dtype=torch.long, device=device)  # (B, T)
            y = generate(model, x, max_new_tokens, temperature=temperature, generator=generator,
                         stop_token=end, use_cache=True)[:, x.shape[1]:].tolist()  # (B, <= max_new)
            for i, row in zip(chunk, y, strict=True):
                out[i] = row[:row.index(end) + 1] if end in row else row
    return out  # type: ignore[return-value]


def answer_text(ids: Sequence[int], tok: ChatTokenizer) -> str:
    """The text of an answer's ids, without its <|end|>."""
    end = tok.id(END)
    return tok.decode([i for i in ids if i != end])


def pass_rate(model: nn.Module, tok: ChatTokenizer, tasks: Sequence[Task], device: torch.device | str,
              system: str = "", temperature: float = 0.0, seed: int = 0) -> tuple[float, list[str]]:
    """(fraction of tasks whose answer passes the verifier, the answers): greedy decoding by default."""
    prompts = [prompt_ids(t.conversation(system), tok) for t in tasks]
    g = torch.Generator().manual_seed(seed)
    answers = [answer_text(a, tok) for a in complete(model, tok, prompts, temperature=temperature,
                                                      generator=g, device=device)]
    return sum(passes(answers, tasks)) / max(len(tasks), 1), answers


def passes(answers: Sequence[str], tasks: Sequence[Task]) -> list[bool]:
    """Whether each answer passes the verifier for its task (the answers of `pass_rate`, in order)."""
    if len(answers) != len(tasks):
        raise ValueError(f"{len(answers)} answers for {len(tasks)} tasks: give one answer per task, in order")
    return [check(a, t.heads).passed for a, t in zip(answers, tasks, strict=True)]


def pass_gap(passed_a: Sequence[bool], passed_b: Sequence[bool]) -> dict[str, float | int | str]:
    """Stage a's pass rate minus stage b's, on the same instructions, with its 95 % interval: the paired gap
    of the per-instruction outcomes (1 passes, 0 fails; `minilm.finetune.paired_gap`, a t interval over the
    instructions) -> {"n", "mean", "sd", "lo", "hi", "verdict"}. The verdict is "ahead" only when the whole
    interval lies above 0, "behind" below, else "no difference measured": on 300 instructions a gap of a
    few points is within the noise."""
    return paired_gap([float(p) for p in passed_a], [float(p) for p in passed_b])
