"""Talk to it (notebook 09): the chat format of a tokenizer, for the generation panel's chat mode.

    from minilm.generation import chat_panel, chat_reply

    chat_panel(sft, chat_format(tok))              # the course's Tang GPT and its ChatTokenizer
    chat_panel(llm, chat_format(llm_tok))          # SmolLM2 (minilm.models.llama.load_smollm2) and its tokenizer
    for piece in chat_reply(sft, chat_format(tok), [{"role": "user", "content": "..."}]): print(piece, end="")

`minilm.generation` (where `chat_reply` and `chat_panel` live) knows nothing of templates: a `ChatFormat`
tells it how a conversation becomes ids, which token ends a turn, and how ids become text. This module
builds one from either kind of tokenizer the course has, recognised by what it can do.
"""

from __future__ import annotations

from typing import Any

from ..generation.panel import ChatFormat
from .template import END, ChatTokenizer, prompt_ids

IM_END = "<|im_end|>"  # SmolLM2's (ChatML's) end of a turn


def chat_format(tok: Any, end_token: str | None = None) -> ChatFormat:
    """The ChatFormat of a tokenizer:

    - a `ChatTokenizer` (template.render's `<|role|> content <|end|>`): prompt ids are
      `template.prompt_ids`, the end token `<|end|>`;
    - a transformers tokenizer with a chat template (SmolLM2's): the text of
      `tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)` encoded without
      added special tokens (the template writes them), the end token `<|im_end|>` where the vocabulary has
      it, else the tokenizer's eos_token.

    end_token overrides the end token (a string of the vocabulary)."""
    if isinstance(tok, ChatTokenizer) or (hasattr(tok, "special_ids") and hasattr(tok, "id")):
        end = end_token or END
        return ChatFormat(prompt_ids=lambda messages: prompt_ids(messages, tok), end_id=tok.id(end),
                          decode=lambda ids: tok.decode(ids), name=f"chat template of {tok!r}")
    if hasattr(tok, "apply_chat_template") and hasattr(tok, "get_vocab"):
        if not getattr(tok, "chat_template", None):
            raise ValueError(f"{type(tok).__name__} has no chat template (a base model's tokenizer?): load an "
                             "instruction-tuned model's tokenizer, or set tok.chat_template first")
        vocab = tok.get_vocab()
        end = end_token or (IM_END if IM_END in vocab else tok.eos_token)
        if end not in vocab:
            raise ValueError(f"end_token={end!r} is not in the tokenizer's vocabulary; pass one of its special "
                             f"tokens, e.g. {sorted(tok.all_special_tokens)[:6]}")

        def ids_of(messages: list[dict]) -> list[int]:  # tokenize=True would return a BatchEncoding here
            text = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
            return tok.encode(text, add_special_tokens=False)

        return ChatFormat(prompt_ids=ids_of, end_id=vocab[end],
                          decode=lambda ids: tok.decode(ids, clean_up_tokenization_spaces=False),
                          name=f"chat template of {getattr(tok, 'name_or_path', '') or type(tok).__name__}")
    raise TypeError(f"chat_format needs a minilm.align.ChatTokenizer or a transformers tokenizer with a chat "
                    f"template; got {type(tok).__name__}. For another tokenizer, build "
                    "minilm.generation.panel.ChatFormat(prompt_ids=..., end_id=..., decode=...) yourself")
