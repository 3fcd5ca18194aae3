"""Generation and fast inference (notebook 06; used by 08 and 09): sampling written by hand, KV-cache decoding,
int8/int4 quantization and pruning, speed and size measurement, and the interactive panel.

- `sampling`: `generate`, `stream`, `sample_next`, `top_k_filter`, `top_p_mask`, `CachedDecoder` (the KV cache
  past block_size)
- `quantize`: `quantize_int8`/`dequantize_int8`, int4 with `pack_int4`/`unpack_int4`, `prune_model`,
  `save_variant`/`load_variant`
- `measure`: `tokens_per_second`, `decode_rates`, `step_times`, `val_loss`, `measure_variants`, `rows_table`,
  `hf_twin` and `hf_decode_rates` (transformers' GPT-2 with a course GPT's weights, timed the same way)
- `panel`: `generation_panel` (ipywidgets), `sample_text`, `stream_text`; the chat mode (09): `chat_panel`,
  `chat_reply`, `ChatFormat`, `fit_history`

Imports the core, `minilm.data` and `minilm.models`; nothing higher.
"""

from .measure import (
    decode_rates,
    hf_decode_rates,
    hf_twin,
    measure_variants,
    rows_table,
    step_times,
    tokens_per_second,
    val_loss,
)
from .panel import (
    ChatFormat,
    chat_panel,
    chat_reply,
    fit_history,
    generation_panel,
    sample_text,
    stream_text,
)
from .quantize import (
    dequantize_int4,
    dequantize_int8,
    load_variant,
    pack_int4,
    prune_model,
    quantize_int4,
    quantize_int8,
    save_variant,
    unpack_int4,
)
from .sampling import CachedDecoder, generate, sample_next, stream, top_k_filter, top_p_mask

__all__ = [
    "CachedDecoder", "ChatFormat", "chat_panel", "chat_reply", "decode_rates", "dequantize_int4", "dequantize_int8",
    "fit_history", "generate", "generation_panel",
    "hf_decode_rates", "hf_twin", "load_variant",
    "measure_variants", "pack_int4", "prune_model", "quantize_int4", "quantize_int8", "rows_table",
    "sample_next", "sample_text", "save_variant", "step_times", "stream", "stream_text", "tokens_per_second",
    "top_k_filter", "top_p_mask", "unpack_int4", "val_loss",
]
