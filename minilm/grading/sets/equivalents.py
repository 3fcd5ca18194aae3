"""What an exercise computes -> every callable that returns that answer directly (its forbidden calls).

An exercise's `forbidden` tuple is the union of the groups of what it computes, plus its twin in the
library (`forbid("softmax", library="minilm.models")`). A group names every function and method of
PyTorch, NumPy, SciPy, scikit-learn and transformers we know to hand back the answer, or all but a
trivial last step (a log, a sum, a product with given weights): the Python function, its method form
(`torch.Tensor.bincount` beside `torch.bincount`), the kernel under the Python wrapper
(`torch._C._nn.cross_entropy_loss` under `F.cross_entropy`) and the classes that compute it on a call
(`torch.distributions.Categorical`, transformers' logits warpers). A PyTorch operator is also refused
through `torch.ops.aten.<name>` (minilm.grading.forbid). A name whose package is not installed is
simply not reachable (the sandbox resolves what is there). tests/test_grading_equivalents.py lists,
per exercise, the equivalents a student tried and proves each is forbidden.

Building blocks stay allowed: exp, log, sum, max, sort, cumsum, matmul, indexing, torch.multinomial,
norms, and `torch.logsumexp` in the exercise that only asks for a stable log-softmax.
"""

from __future__ import annotations

_LOG_SOFTMAX = (
    "torch.log_softmax",
    "torch.Tensor.log_softmax",
    "torch.nn.functional.log_softmax",
    "torch.special.log_softmax",
    "torch._log_softmax",
    "torch.nn.LogSoftmax",
    "scipy.special.log_softmax",
)
_LOGSUMEXP = ("torch.logsumexp", "torch.Tensor.logsumexp", "torch.special.logsumexp", "scipy.special.logsumexp")
_DISTRIBUTIONS = (  # normalise logits or counts on construction, and score with log_prob
    "torch.distributions.Categorical",
    "torch.distributions.OneHotCategorical",
    "torch.distributions.Multinomial",
    "torch.distributions.utils.logits_to_probs",
    "torch.distributions.utils.probs_to_logits",
)
_NLL = (
    "torch.nn.functional.cross_entropy",
    "torch.nn.functional.nll_loss",
    "torch.nn.CrossEntropyLoss",
    "torch.nn.NLLLoss",
    "torch._C._nn.cross_entropy_loss",
    "torch._C._nn.nll_loss",
    "torch._C._nn.nll_loss_nd",
    "torch._C._nn.nll_loss2d",
    "sklearn.metrics.log_loss",
    "transformers.loss.loss_utils",  # fixed_cross_entropy, ForCausalLMLoss, ...
    *_DISTRIBUTIONS,
)
_ATTENTION = (
    "torch.nn.functional.scaled_dot_product_attention",
    "torch._C._nn.scaled_dot_product_attention",
    "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu",
    "torch.ops.aten._scaled_dot_product_attention_math",
    "torch.ops.aten._scaled_dot_product_efficient_attention",
    "torch.ops.aten._scaled_dot_product_flash_attention",
    "torch.ops.aten._scaled_dot_product_cudnn_attention",
    "torch.nn.functional.multi_head_attention_forward",
    "torch._native_multi_head_attention",
    "torch.nn.MultiheadAttention",
    "torch.nn.modules.transformer",  # nn.Transformer*, built on MultiheadAttention
    "torch.nn.attention.flex_attention.flex_attention",
    "transformers.integrations.sdpa_attention.sdpa_attention_forward",
    "transformers.models.gpt2.modeling_gpt2.eager_attention_forward",
)
_LINEAR = ("torch.nn.Linear", "torch.nn.functional.linear", "torch._C._nn.linear", "torch.nn.LazyLinear")
_EMBEDDING = ("torch.nn.Embedding", "torch.nn.functional.embedding", "torch.embedding")
_MODULE_PARAMETERS = (  # build the model and count or list its tensors
    "torch.nn.Module.parameters",
    "torch.nn.Module.named_parameters",
    "torch.nn.Module.state_dict",
    "torch.nn.Module.modules",
    "torch.nn.Module.named_modules",
    "torch.nn.Module.children",
    "torch.nn.Module.named_children",
    "torch.nn.utils.parameters_to_vector",
    "transformers.modeling_utils.ModuleUtilsMixin.num_parameters",
)
_LOGITS_WARPERS = ("transformers.generation.logits_process",)  # TopK, TopP, Temperature, MinP ... warpers
_QUANTIZE = (
    "torch.quantize_per_channel",
    "torch.quantize_per_tensor",
    "torch.fake_quantize_per_channel_affine",
    "torch.fake_quantize_per_tensor_affine",
    "torch._make_per_channel_quantized_tensor",
    "torch.dequantize",
    "torch.Tensor.dequantize",
    "torch.Tensor.int_repr",
    "torch.Tensor.q_per_channel_scales",
    "torch.ao.quantization.observer.MinMaxObserver",
    "torch.ao.quantization.observer.PerChannelMinMaxObserver",
    "torch.ao.quantization.fx._decomposed",  # quantize_per_channel and friends as plain functions
    "torch._convert_weight_to_int4pack",
)

# what it computes -> the callables that compute it
COMPUTES: dict[str, tuple[str, ...]] = {
    "softmax": (
        "torch.softmax",
        "torch.Tensor.softmax",
        "torch.nn.functional.softmax",
        "torch.nn.functional.softmin",
        "torch.special.softmax",
        "torch._softmax",
        "torch.nn.Softmax",
        "torch.nn.Softmin",
        "scipy.special.softmax",
        "sklearn.utils.extmath.softmax",
        *_LOG_SOFTMAX,
        *_LOGSUMEXP,
        *_DISTRIBUTIONS,
    ),
    "log-softmax": _LOG_SOFTMAX + _DISTRIBUTIONS,
    "log-sum-exp": _LOGSUMEXP,
    "cross-entropy": _NLL + _LOG_SOFTMAX + _LOGSUMEXP,
    "negative log-likelihood": _NLL,
    "row normalisation": (
        "torch.nn.functional.normalize",
        "sklearn.preprocessing.normalize",
        "sklearn.preprocessing.Normalizer",
        *_DISTRIBUTIONS,
    ),
    "linear layer": _LINEAR,
    "embedding lookup": _EMBEDDING,
    "recurrent cell": (
        "torch.nn.modules.rnn",  # nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU, ...
        "torch.rnn_tanh_cell",
        "torch.rnn_tanh",
        "torch.rnn_relu_cell",
        "torch.rnn_relu",
        "torch.lstm_cell",
        "torch.lstm",
        "torch.ops.aten._thnn_fused_lstm_cell",
    ),
    "gradient clipping": (
        "torch.nn.utils.clip_grad",  # clip_grad_norm_, clip_grads_with_norm_, get_total_norm
        "torch.nn.utils.clip_grad_norm_",
        "torch.nn.utils.clip_grads_with_norm_",
        "torch.nn.utils.get_total_norm",
        "torch._foreach_norm",
    ),
    "attention": _ATTENTION,
    "layer normalisation": (
        "torch.nn.functional.layer_norm",
        "torch.layer_norm",
        "torch.native_layer_norm",
        "torch.nn.modules.normalization",  # nn.LayerNorm, nn.GroupNorm, nn.RMSNorm
        "torch.nn.functional.group_norm",
        "torch.group_norm",
        "torch.nn.functional.batch_norm",
        "torch.batch_norm",
        "torch.nn.functional.instance_norm",
        "torch.instance_norm",
        "torch.nn.modules.batchnorm",
        "torch.nn.modules.instancenorm",
        "sklearn.preprocessing.scale",
        "sklearn.preprocessing.StandardScaler",
    ),
    "learning-rate schedule": ("torch.optim.lr_scheduler", "transformers.optimization"),
    "parameter count": _MODULE_PARAMETERS,
    "top-k filter": _LOGITS_WARPERS,
    "top-p nucleus": _LOGITS_WARPERS,
    "temperature sampling": _LOGITS_WARPERS,
    "int8 quantization": _QUANTIZE,
    "counts per class": (
        "torch.bincount",
        "torch.Tensor.bincount",
        "numpy.bincount",
        "torch.histc",
        "torch.Tensor.histc",
        "torch.histogram",
        "torch.histogramdd",
        "numpy.histogram",
        "numpy.histogram2d",
        "numpy.histogramdd",
        "sklearn.metrics.confusion_matrix",
        "sklearn.metrics.multilabel_confusion_matrix",
        "sklearn.metrics.accuracy_score",
    ),
    "cosine similarity": (
        "torch.nn.functional.cosine_similarity",
        "torch.cosine_similarity",
        "torch.nn.CosineSimilarity",
        "sklearn.metrics.pairwise.cosine_similarity",
        "sklearn.metrics.pairwise.cosine_distances",
        "sklearn.metrics.pairwise_distances",
        "scipy.spatial.distance.cosine",
        "scipy.spatial.distance.cdist",
    ),
}


def forbid(*what: str, library: str | tuple[str, ...] = ()) -> tuple[str, ...]:
    """The forbidden names of an exercise that computes each of `what` (keys of COMPUTES), with its
    twin(s) in the library first; in a stable order, without repeats."""
    unknown = [w for w in what if w not in COMPUTES]
    if unknown:
        raise KeyError(f"no group {unknown[0]!r} in COMPUTES; the groups are: {', '.join(COMPUTES)}")
    twins = (library,) if isinstance(library, str) else library
    names = [*twins, *(name for w in what for name in COMPUTES[w])]
    return tuple(dict.fromkeys(names))
