"""Alignment (notebook 09): from a language model to an assistant, every stage written out in a few functions.

- `template`: `ChatTokenizer` (special tokens added to a trained tokenizer), `grow_vocab`, `render`
  (conversation -> ids + the mask of the trained tokens), `prompt_ids`
- `sft`: `masked_targets`, `sft_loss`, `pad_batch`, `sft_batches` (for the course's training loop), `masked_loss`
- `verifier`: the acrostic quatrain's checker, `check` -> `Verdict`, `reward`, `heads_of`
- `task`: `Task`, `acrostic_splits` (instructions from the Tang corpus, held-out ones from unseen poems),
  `with_random_heads` (SFT examples whose heads can only be copied), `complete` (batched KV-cache answers),
  `pass_rate` (the notebook's one metric), `passes` and `pass_gap` (one stage against another, with the
  95 % interval of the difference)
- `dpo`: `token_logprobs`, `sequence_logprobs`, `dpo_loss`, `make_pairs`, `train_dpo`
- `rl`: `group_advantages`, `clipped_policy_loss`, `kl_to_reference`, `rollout`, `train_grpo`
- `pipeline`: the chain on the course's Tang GPT, each stage cached: `chat_base`, `run_sft`, `run_dpo`,
  `run_rl`, `recipe_for` (the per-preset settings, from `minilm.recipes.ALIGN`)
- `chat`: `chat_format` (a ChatTokenizer's or a transformers tokenizer's template and end token) for
  `minilm.generation`'s `chat_reply` and `chat_panel` (talk to a model: multi-turn, streamed)

Imports the core, `minilm.data`, `minilm.models`, `minilm.training`, `minilm.generation` and `minilm.finetune`
(LoRA, the paired interval); nothing higher.
"""

from .chat import chat_format
from .dpo import LOG2, Pair, dpo_loss, make_pairs, sequence_logprobs, token_logprobs, train_dpo
from .rl import clipped_policy_loss, group_advantages, kl_to_reference, rollout, train_grpo
from .sft import masked_loss, masked_targets, pad_batch, sft_batches, sft_loss
from .task import Task, acrostic_splits, complete, pass_gap, pass_rate, passes, with_random_heads
from .template import (
    ASSISTANT,
    END,
    SPECIALS,
    SYSTEM,
    USER,
    ChatTokenizer,
    grow_vocab,
    prompt_ids,
    render,
)
from .verifier import Verdict, check, heads_of, reward

__all__ = [
    "ASSISTANT", "END", "LOG2", "SPECIALS", "SYSTEM", "USER", "ChatTokenizer", "Pair", "Task", "Verdict",
    "acrostic_splits", "chat_format", "check", "clipped_policy_loss", "complete", "dpo_loss", "group_advantages",
    "grow_vocab", "heads_of", "kl_to_reference", "make_pairs", "masked_loss", "masked_targets", "pad_batch",
    "pass_gap", "pass_rate", "passes", "prompt_ids", "render", "reward", "rollout", "sequence_logprobs",
    "sft_batches", "sft_loss", "token_logprobs", "train_dpo", "train_grpo", "with_random_heads",
]
