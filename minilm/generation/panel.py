"""A generation panel for notebooks: prompt, temperature, top-k, top-p, length, seed, a button, streaming text (06).

    panel = generation_panel(model, tok)   # an ipywidgets VBox; display it (or end the cell with it)
    print(sample_text(model, tok, "ROMEO:", temperature=0.8, top_p=0.9, length=200, seed=0))

The button streams the sample into the text box token by token (`minilm.generation.stream` with
the KV cache, seeded, so the same settings give the same text). Where widgets cannot render
(nbconvert, a terminal, tests) the panel shows as a line of text; `sample_text` prints the same
sample without widgets. Works with any model of the contract and any tokenizer with encode/decode.
"""

from __future__ import annotations

from collections.abc import Iterator
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
