"""Training (notebooks 02-05, used by every later one): the one loop, its optimizers, checkpoints that resume
exactly, training on several processes, and the model cache ("the pretrained GPT for this preset").

- `loop`: `TrainConfig`, `History`, `train`, `get_lr`, `make_optimizer` (every optimizer of the course), `estimate_loss`
- `optim`: AdamW parameter groups, fused AdamW, `maybe_compile`
- `checkpoint`: atomic `save_checkpoint`, `load_checkpoint`, `checkpoint_path`, `model_from_checkpoint`, `unwrap`
- `distributed`: `SingleProcess` and `DDPStrategy` (torchrun; `minilm pretrain`)
- `zoo`: the model cache: `pretrained_gpt`, `load_model`, `load_or_train`, `train_stages`, the GPT recipe of
  each preset (read from `minilm.recipes`)

Imports the core, `minilm.data` and `minilm.models`; nothing higher.
"""

from .checkpoint import (
    checkpoint_path,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    unwrap,
)
from .loop import History, TrainConfig, estimate_loss, get_lr, make_optimizer, train
from .optim import compile_supported, maybe_compile, param_groups
from .zoo import (
    SEED,
    gpt_config_for,
    gpt_sizes,
    load_model,
    load_or_train,
    pretrained_gpt,
    recipe_for,
    run_name_for,
    save_pretrained,
    train_gpt,
    train_stages,
)

__all__ = [
    "SEED", "History", "TrainConfig", "checkpoint_path", "compile_supported", "estimate_loss", "get_lr",
    "gpt_config_for", "gpt_sizes", "load_checkpoint", "load_model", "load_or_train", "make_optimizer",
    "maybe_compile", "model_from_checkpoint", "param_groups", "pretrained_gpt", "recipe_for", "run_name_for",
    "save_checkpoint", "save_pretrained", "train", "train_gpt", "train_stages", "unwrap",
]
