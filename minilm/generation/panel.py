"""A generation panel for notebooks: prompt, temperature, top-k, top-p, length, seed, a button, streaming text (06),
and its chat mode (09): a multi-turn conversation in the model's own chat template, streamed, stopped at its end token.

    panel = generation_panel(model, tok)   # an ipywidgets VBox; display it (or end the cell with it)
    print(sample_text(model, tok, "ROMEO:", temperature=0.8, top_p=0.9, length=200, seed=0))

The button streams the sample into the text box token by token (`minilm.generation.stream` with
the KV cache, seeded, so the same settings give the same text). Where widgets cannot render
(nbconvert, a terminal, tests) the panel shows as a line of text; `sample_text` prints the same
sample without widgets. Works with any model of the contract and any tokenizer with encode/decode.

    chat = minilm.align.chat_format(tok)           # a ChatFormat: the template, the end token, decode
    chat_panel(model, chat, system="...")          # Send / Reset, the answer streamed as it is written
    for piece in chat_reply(model, chat, [{"role": "user", "content": "Hi"}]): print(piece, end="")
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .sampling import check_sampling_args, stream


def _prompt_ids(model: nn.Module, tok: Any, prompt: str) -> torch.Tensor:
    """The prompt as (1, T) ids on the model's device: the last block_size tokens (a newline if empty)."""
    ids = tok.encode(prompt or "\n")
    if not ids:
        raise ValueError("prompt: it encodes to no tokens; type at least one character the tokenizer knows")
    device = next(model.parameters()).device
    return torch.tensor([ids[-model.block_size:]], dtype=torch.long, device=device)


def stream_text(model: nn.Module, tok: Any, prompt: str, temperature: float = 0.8, top_k: int | None = None,
                top_p: float | None = None, length: int = 200, seed: int = 0) -> Iterator[str]:
    """Yield the text generated so far (prompt excluded) after each new token: seeded and reproducible.

    top_k 0 or None and top_p 1 or None switch those filters off."""
    top_k = None if not top_k else int(top_k)
    top_p = None if top_p is None or top_p >= 1 else float(top_p)
    check_sampling_args(temperature, top_k, top_p)
    idx = _prompt_ids(model, tok, prompt)
    ids: list[int] = []
    generator = torch.Generator().manual_seed(int(seed))
    for nxt in stream(model, idx, int(length), temperature, top_k, generator, top_p=top_p):
        ids.append(int(nxt[0, 0]))
        yield tok.decode(ids)


def sample_text(model: nn.Module, tok: Any, prompt: str, temperature: float = 0.8, top_k: int | None = None,
                top_p: float | None = None, length: int = 200, seed: int = 0) -> str:
    """The prompt followed by the sample `stream_text` streams (the same text, all at once)."""
    text = ""
    for text in stream_text(model, tok, prompt, temperature, top_k, top_p, length, seed):
        pass
    return prompt + text


def generation_panel(model: nn.Module, tok: Any, prompt: str = "ROMEO:", length: int = 200, max_length: int = 2000):
    """An ipywidgets panel (VBox): the sliders, a Generate button, and a text box the sample streams into.

    `panel.button.click()` runs it from code (what the tests do); `panel.output.value` is the text."""
    import ipywidgets as w

    style = {"description_width": "90px"}
    prompt_box = w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="95%"), style=style)
    temperature = w.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05, description="temperature", style=style)
    top_k = w.IntSlider(value=0, min=0, max=int(model.config.vocab_size), description="top-k (0: off)",
                        style=style)
    top_p = w.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p (1: off)", style=style)
    n_tokens = w.IntSlider(value=length, min=1, max=max_length, description="length", style=style)
    seed = w.IntText(value=0, description="seed", style=style)
    button = w.Button(description="Generate", button_style="primary", icon="play")
    status = w.Label(value="")
    output = w.Textarea(value="", layout=w.Layout(width="95%", height="240px"), disabled=False)

    def run(_=None) -> None:
        button.disabled = True
        status.value = "generating..."
        try:
            output.value = prompt_box.value
            for text in stream_text(model, tok, prompt_box.value, temperature.value, top_k.value, top_p.value,
                                    n_tokens.value, seed.value):
                output.value = prompt_box.value + text  # the front end redraws as tokens arrive
            status.value = f"{n_tokens.value} tokens, seed {seed.value}"
        except ValueError as err:  # e.g. a prompt with characters the tokenizer does not know
            status.value = f"error: {err}"
        finally:
            button.disabled = False

    button.on_click(run)
    panel = w.VBox([prompt_box, w.HBox([temperature, top_k]), w.HBox([top_p, n_tokens]),
                    w.HBox([seed, button, status]), output])
    panel.button, panel.output, panel.status = button, output, status  # for code and tests
    panel.controls = {"prompt": prompt_box, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                      "length": n_tokens, "seed": seed}
    return panel


# --- chat mode (09): multi-turn, streaming, the model's own template, stopped at its end token ---------------

@dataclass(frozen=True)
class ChatFormat:
    """How one model's conversations become ids: all `chat_reply` and `chat_panel` need to know.

    prompt_ids(messages) -> the ids the model continues to answer them (the chat template with its
    generation prompt); end_id: the token that ends an assistant turn; decode(ids) -> str.
    `minilm.align.chat_format(tok)` builds one for the course's ChatTokenizer or a transformers tokenizer."""

    prompt_ids: Callable[[list[dict]], list[int]]
    end_id: int
    decode: Callable[[list[int]], str]
    name: str = "chat"


def reply_room(model: nn.Module, max_new_tokens: int) -> int:
    """Tokens of the context kept free for the answer: max_new_tokens, at most half of block_size."""
    return max(1, min(int(max_new_tokens), model.block_size // 2))


def fit_history(chat: ChatFormat, messages: list[dict], budget: int) -> tuple[list[dict], int]:
    """(the messages the model reads, how many were dropped): while the prompt has more than `budget`
    tokens, the oldest turn leaves (a user message and the assistant's answer to it); a leading system
    message stays, and so does the last message. Raises ValueError when even those two do not fit."""
    messages = list(messages)
    system = messages[:1] if messages and messages[0].get("role") == "system" else []
    turns, dropped = messages[len(system):], 0
    while (n := len(chat.prompt_ids(system + turns))) > budget:
        if len(turns) <= 1:
            raise ValueError(f"the prompt of the last message{' and the system prompt' if system else ''} alone has "
                             f"{n} tokens, more than the {budget} the context leaves for it: write a shorter message"
                             f"{' or system prompt' if system else ''}, or lower max_new_tokens")
        turns, dropped = turns[1:], dropped + 1
        while len(turns) > 1 and turns[0].get("role") != "user":  # the answer goes with its question
            turns, dropped = turns[1:], dropped + 1
    return system + turns, dropped


def chat_reply(model: nn.Module, chat: ChatFormat, messages: list[dict], temperature: float = 0.7,
               top_k: int | None = None, top_p: float | None = None, max_new_tokens: int = 200,
               seed: int = 0) -> Iterator[str]:
    """Yield the assistant's answer to `messages` (the last one is the user's) in pieces, as it is sampled.

    The prompt is `chat.prompt_ids` of the messages, the oldest turns dropped when it would leave less
    than `reply_room` of block_size (`fit_history`); the tokens come from `minilm.generation.stream`
    (KV cache, seeded: the same arguments give the same answer) and stop at `chat.end_id`, which is not
    part of the answer, or after max_new_tokens. "".join(pieces) == chat.decode(answer ids). A piece is
    held back while the text ends in half a character (byte-level BPE), so every piece is whole text."""
    top_k = None if not top_k else int(top_k)
    top_p = None if top_p is None or top_p >= 1 else float(top_p)
    check_sampling_args(temperature, top_k, top_p)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    kept, _ = fit_history(chat, messages, model.block_size - reply_room(model, max_new_tokens))
    device = next(model.parameters()).device
    idx = torch.tensor([chat.prompt_ids(kept)], dtype=torch.long, device=device)  # (1, T)
    generator = torch.Generator().manual_seed(int(seed))
    answer: list[int] = []
    shown = ""
    for nxt in stream(model, idx, int(max_new_tokens), temperature, top_k, generator, stop_token=chat.end_id,
                      top_p=top_p):
        token = int(nxt[0, 0])
        if token == chat.end_id:
            break
        answer.append(token)
        text = chat.decode(answer)
        if text.endswith("\ufffd") or not text.startswith(shown):  # half a character: wait for the rest
            continue
        if len(text) > len(shown):
            yield text[len(shown):]
            shown = text
    text = chat.decode(answer)
    if len(text) > len(shown) and text.startswith(shown):
        yield text[len(shown):]


def chat_panel(model: nn.Module, chat: ChatFormat, system: str | None = None, temperature: float = 0.7,
               max_new_tokens: int = 200, seed: int = 0, top_k: int | None = None, top_p: float | None = None):
    """An ipywidgets chat (VBox): a message box, Send and Reset, a temperature slider, the conversation.

    Each Send adds the user's message to the history, streams the answer into the conversation
    (`chat_reply`, seed + turn number) and adds it to the history, so the next prompt holds every
    earlier turn; when they no longer fit the context, the oldest turns are dropped (the system
    prompt stays) and the conversation says so. Reset starts over. From code (tests): set
    `panel.input.value`, call `panel.send.click()`; `panel.messages` is what the model reads,
    `panel.output.value` the conversation shown (HTML)."""
    import ipywidgets as w

    start = [{"role": "system", "content": system}] if system else []
    budget = model.block_size - reply_room(model, max_new_tokens)
    box = w.Textarea(value="", placeholder="your message", layout=w.Layout(width="95%", height="60px"))
    send = w.Button(description="Send", button_style="primary", icon="paper-plane")
    reset = w.Button(description="Reset", icon="refresh")
    temp = w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05, description="temperature")
    status = w.Label(value="")
    output = w.HTML(value="")
    messages: list[dict] = list(start)
    transcript: list[tuple[str, str]] = []  # (who, text) as shown, dropped turns included
    colours = {"system": "#888", "user": "#1565c0", "assistant": "#2e7d32", "note": "#c62828"}

    def draw() -> None:
        rows = [f'<div style="white-space:pre-wrap;margin:2px 0"><b style="color:{colours[who]}">{who}:</b> '
                f"{html.escape(text)}</div>" for who, text in transcript]
        output.value = "".join(rows)

    def on_reset(_=None) -> None:
        messages[:] = start
        transcript[:] = [("system", system)] if system else []
        status.value = "a new conversation"
        draw()

    def on_send(_=None) -> None:
        text = box.value.strip()
        if not text:
            status.value = "type a message first"
            return
        send.disabled = True
        try:
            kept, dropped = fit_history(chat, [*messages, {"role": "user", "content": text}], budget)
            transcript.append(("user", text))
            if dropped:
                note = (f"{dropped} of the oldest messages left out: the conversation no longer fits the context "
                        f"({model.block_size} tokens, {model.block_size - budget} of them kept for the answer); "
                        "the model no longer sees them")
                transcript.append(("note", note))
            transcript.append(("assistant", ""))
            box.value = ""
            turn = sum(who == "user" for who, _ in transcript)  # counts dropped turns too: a new seed each turn
            for piece in chat_reply(model, chat, kept, temp.value, top_k, top_p, max_new_tokens, seed + turn):
                transcript[-1] = ("assistant", transcript[-1][1] + piece)
                draw()  # the front end redraws as the answer is written
            draw()
            messages[:] = [*kept, {"role": "assistant", "content": transcript[-1][1]}]
            status.value = (f"{len(chat.prompt_ids(kept))} prompt tokens, {len(messages) - len(start)} messages kept"
                            + (f", {dropped} dropped" if dropped else ""))
        except ValueError as err:  # a message the tokenizer cannot encode, or one too long for the context
            status.value = f"error: {err}"
        finally:
            send.disabled = False

    send.on_click(on_send)
    reset.on_click(on_reset)
    on_reset()
    status.value = ""
    panel = w.VBox([output, box, w.HBox([send, reset, temp]), status])
    panel.input, panel.send, panel.reset, panel.output, panel.status = box, send, reset, output, status
    panel.messages, panel.transcript, panel.controls = messages, transcript, {"temperature": temp}
    return panel
