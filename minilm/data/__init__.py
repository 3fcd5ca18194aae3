"""Data and tokens (notebooks 01-03, and every later notebook's corpus): datasets fetched by URL and checked
by sha256, tokenizers written by hand, train/val streams and batches, token folders for `minilm prepare`.

- `datasets`: the registry (`DATASETS`), `fetch`, `path`, `load_text`, `cache_root` (the offline mirror: MINILM_DATA_DIR)
- `tokenizers`: `CharTokenizer`, the byte-level `BPETokenizer` and its teaching helpers `get_pair_counts`, `merge`
- `batching`: `encode_corpus`, `train_val_split`, `get_batch`, `char_data`, `batch_fn`
- `names`: names.txt as makemore models it (02)
- `tokenfile`: `prepare` (a dataset or text file -> a token folder), `TokenFile`, `load_tokenizer` (issue 13)

Imports nothing of minilm above the core (runtime, presets).
"""

from .batching import batch_fn, char_data, encode_corpus, get_batch, train_val_split
from .datasets import (
    DATASETS,
    TANG_POEM,
    DataError,
    cache_dir,
    cache_root,
    describe,
    fetch,
    load_text,
    mirror_dir,
    path,
)
from .names import dataset_loss, decode_name, load_names, row_sampler
from .tokenfile import TokenFile, load_tokenizer, prepare
from .tokenizers import SPLIT_PATTERN, BPETokenizer, CharTokenizer, get_pair_counts, merge

__all__ = [
    "DATASETS",
    "SPLIT_PATTERN",
    "TANG_POEM",
    "BPETokenizer",
    "CharTokenizer",
    "DataError",
    "TokenFile",
    "batch_fn",
    "cache_dir",
    "cache_root",
    "char_data",
    "dataset_loss",
    "decode_name",
    "describe",
    "encode_corpus",
    "fetch",
    "get_batch",
    "get_pair_counts",
    "load_names",
    "load_text",
    "load_tokenizer",
    "merge",
    "mirror_dir",
    "path",
    "prepare",
    "row_sampler",
    "train_val_split",
]
