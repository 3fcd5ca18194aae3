"""Fine-tuning (notebook 07; LoRA is used again in 09): GPT-1's recipe at small scale. A GPT pretrained on
unlabelled review text, then a classifier on its hidden states, trained head-only, fully or with LoRA written
by hand, against a from-scratch twin and against a real pretrained encoder (MiniLM, offline).

- `reviews`: rt-polarity's fixed split (`rt_polarity_split`, `subsample`), the unlabelled pretraining text
  (`load_movie_reviews`, `pretraining_text`: train snippets + full reviews, leaks dropped), `encode_texts`/`encode_for`
  (pad with PAD = -1), `check_labels`, `check_tokenizer`
- `classifier`: pooling (`last_token_pool`, `mean_pool`, `max_pool`), `GPTClassifier`, `EncoderClassifier`,
  `LinearProbe`, `prepare(model, "head" | "full" | "lora")`, `finetune`, `predict`, `accuracy`,
  `confusion_matrix`, `training_memory_bytes` (`activation_bytes`: what autograd saves, weights left out)
- `review_gpt`: the review GPT (`review_gpt`, cached), `fresh_twin`, `finetune_config`, `split_tensors`,
  `paired_gap` (a gap over seeds with its 95 % interval and verdict)
  (settings in `minilm.recipes`)
- `lora`: `LoRALinear`, `LoRAEmbedding`, `apply_lora`, `merge_lora`, `unmerge_lora`, `count_parameters`
- `encoder`: all-MiniLM-L6-v2 offline: `minilm_encoder`, `minilm_classifier`

Imports the core, `minilm.data`, `minilm.models` and `minilm.training`; nothing higher.
"""

from .classifier import (
    GPT_LORA_PATTERN,
    EncoderClassifier,
    FinetuneResult,
    GPTClassifier,
    HFTokenizer,
    LinearProbe,
    accuracy,
    activation_bytes,
    classification_batches,
    confusion_matrix,
    finetune,
    last_token_pool,
    max_pool,
    mean_pool,
    padding_mask,
    pool,
    predict,
    prepare,
    training_memory_bytes,
)
from .encoder import minilm_classifier, minilm_encoder
from .lora import (
    LoRAEmbedding,
    LoRALinear,
    apply_lora,
    count_parameters,
    lora_layers,
    mark_only_lora_trainable,
    merge_lora,
    unmerge_lora,
)
from .review_gpt import (
    finetune_config,
    finetune_recipe,
    fresh_twin,
    paired_gap,
    review_gpt,
    review_recipe,
    split_tensors,
)
from .reviews import (
    LABELS,
    PAD,
    Split,
    check_labels,
    check_tokenizer,
    encode_for,
    encode_texts,
    load_movie_reviews,
    make_split,
    pretraining_text,
    rt_polarity_split,
    subsample,
    tokenizer_fingerprint,
)

__all__ = [
    "GPT_LORA_PATTERN", "LABELS", "PAD", "EncoderClassifier", "FinetuneResult", "GPTClassifier", "HFTokenizer", "LinearProbe",
    "LoRAEmbedding", "LoRALinear", "Split", "accuracy", "activation_bytes", "apply_lora", "check_labels", "check_tokenizer",
    "classification_batches", "confusion_matrix", "count_parameters", "encode_for", "encode_texts",
    "finetune", "finetune_config", "finetune_recipe", "fresh_twin", "last_token_pool", "load_movie_reviews", "lora_layers", "make_split",
    "mark_only_lora_trainable", "max_pool", "mean_pool", "merge_lora", "minilm_classifier", "minilm_encoder",
    "padding_mask", "paired_gap", "pool", "predict", "prepare", "pretraining_text", "review_gpt", "review_recipe", "rt_polarity_split", "split_tensors",
    "subsample", "tokenizer_fingerprint", "training_memory_bytes", "unmerge_lora",
]
