"""Smaller GPTs, by hand: int8 and int4 weight quantization, magnitude pruning, saved as real files (06).

Written out because the course teaches how they work (torch.ao.quantization is deprecated):

- int8, symmetric per output channel: row i of a weight W (out, in) gets scale_i = max|W_i| / 127
  and is stored as round(W_i / scale_i) in int8 (-127..127); W_i ~ q_i * scale_i.
- int4, symmetric per group: each run of `group_size` weights of a row gets its own scale
  max|w| / 7 and values -7..7 (15 levels), stored as value + 8 (1..15) in a nibble, two per byte.
  A nibble holds 16 values (-8..7, what pack_int4 accepts), but a symmetric scale leaves -8
  unused, as int8's -127..127 leaves -128.
- magnitude pruning: in each pruned matrix, exactly round(sparsity * numel) weights of smallest
  magnitude become 0 (ties broken by position). Saved sparse: a bit mask (one bit per weight)
  plus the kept values in fp32.

The quantized matrices are the 2-D weights of the embeddings (wte, wpe; the tied lm_head comes
with wte) and of every Linear in the blocks; biases and LayerNorms stay fp32 (a few KB).
`save_variant(model, path, scheme)` writes one file (torch.save of plain tensors); its size in
bytes is what "size" means. `load_variant(path)` gives a GPT back: int8/int4 Linears stay
quantized in memory (`QuantizedLinear`, dequantized at each forward: small, not faster on a CPU),
pruned weights are densified (dense kernels skip no zeros).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..models.gpt import GPT, GPTConfig

FORMAT = "minilm-variant-1"
SCHEMES = ("fp32", "int8", "int4", "pruned")


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (out, in) float -> q (out, in) int8 in [-127, 127], scale (out,) float32 with w ~ q * scale[:, None]."""
    if w.dim() != 2:
        raise ValueError(f"w must be a 2-D weight (out, in); got shape {tuple(w.shape)}")
    w = w.detach().float()
    scale = w.abs().amax(dim=1) / 127.0  # (out,): the largest weight of a row maps to 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row: any scale
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q (out, in) int8, scale (out,) -> w (out, in) float32."""
    return q.float() * scale[:, None]


def quantize_int4(w: torch.Tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """w (out, in) -> packed (out, in // 2) uint8, scales (out, in // group_size) float16.

    `in` must be a multiple of group_size (itself even). Each byte holds two weights: the even
    column in the low nibble, the odd one in the high nibble, each as value + 8 with value in -7..7."""
    if w.dim() != 2:
        raise ValueError(f"w must be a 2-D weight (out, in); got shape {tuple(w.shape)}")
    out_f, in_f = w.shape
    if group_size < 2 or group_size % 2 or in_f % group_size:
        raise ValueError(f"group_size={group_size} must be even and divide the {in_f} input columns")
    groups = w.detach().float().reshape(out_f, in_f // group_size, group_size)  # (out, G, g)
    scales = (groups.abs().amax(dim=-1) / 7.0).to(torch.float16)  # (out, G), stored in fp16
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round(groups / scales.float()[..., None]).clamp(-7, 7).to(torch.int8)  # -7..7
    return pack_int4(q.reshape(out_f, in_f)), scales


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """q (out, in) integers in -8..7, `in` even -> (out, in // 2) uint8: q[:, 2j] + 8 in the low nibble
    of byte j, q[:, 2j + 1] + 8 in the high one."""
    u = (q.to(torch.int16) + 8).to(torch.uint8)  # 0..15
    return u[:, 0::2] | (u[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """packed (out, in // 2) uint8 -> q (out, in) int8 in -8..7 (the inverse of pack_int4)."""
    low = (packed & 0x0F).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=-1).reshape(packed.shape[0], -1)


def dequantize_int4(packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """packed (out, in // 2) uint8, scales (out, G) -> w (out, in) float32."""
    q = unpack_int4(packed).float()  # (out, in)
    G = scales.shape[1]
    return (q.reshape(q.shape[0], G, -1) * scales.float()[..., None]).reshape(q.shape)


def prune_tensor(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A copy of w with exactly round(sparsity * numel) of its smallest-magnitude entries set to 0."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity={sparsity} must be in [0, 1) (the fraction of weights set to 0)")
    flat = w.detach().reshape(-1).clone()
    n_zero = round(sparsity * flat.numel())
    if n_zero:
        order = torch.argsort(flat.abs(), stable=True)  # smallest first; ties by position
        flat[order[:n_zero]] = 0
    return flat.reshape(w.shape)


def prunable(model: GPT) -> dict[str, nn.Linear]:
    """The Linears of the blocks (attention and MLP matrices): what pruning and quantization act on."""
    return {name: m for name, m in model.transformer.h.named_modules() if isinstance(m, nn.Linear)}


@torch.no_grad()
def prune_model(model: GPT, sparsity: float) -> GPT:
    """Magnitude-prune, in place, every Linear weight of the blocks to `sparsity` (each matrix exactly) -> model."""
    for lin in prunable(model).values():
        lin.weight.copy_(prune_tensor(lin.weight, sparsity))
    return model


class QuantizedLinear(nn.Module):
    """A Linear whose weight stays int8 (per-channel scales) or packed int4 (group scales): x (..., in) -> (..., out).

    The weight is dequantized to fp32 at every call, then a dense matmul runs: memory shrinks, the
    arithmetic does not (and the dequantization is extra work)."""

    def __init__(self, scheme: str, data: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.scheme = scheme
        self.register_buffer("data", data)
        self.register_buffer("scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def weight_fp32(self) -> torch.Tensor:
        """The dequantized weight (out, in)."""
        deq = dequantize_int8 if self.scheme == "int8" else dequantize_int4
        return deq(self.data, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight_fp32().to(x.dtype), self.bias)


def _encode(w: torch.Tensor, scheme: str, group_size: int) -> dict[str, torch.Tensor]:
    if scheme == "int8":
        q, s = quantize_int8(w)
        return {"q": q, "scale": s}
    if scheme == "int4":
        q, s = quantize_int4(w, group_size)
        return {"q": q, "scale": s}
    if scheme == "pruned":  # sparse: a bit per weight saying kept or not, and the kept values
        mask = w.reshape(-1) != 0
        bits = torch.cat([mask, mask.new_zeros((-mask.numel()) % 8)]).reshape(-1, 8).to(torch.uint8)
        packed = (bits << torch.arange(8, dtype=torch.uint8)).sum(dim=1, dtype=torch.uint8)
        return {"mask": packed, "values": w.reshape(-1)[mask].float().clone()}
    return {"w": w.detach().float().clone()}


def _decode(enc: dict[str, torch.Tensor], shape: tuple[int, ...], scheme: str) -> torch.Tensor:
    if scheme == "int8":
        return dequantize_int8(enc["q"], enc["scale"])
    if scheme == "int4":
        return dequantize_int4(enc["q"], enc["scale"])
    if scheme == "pruned":
        n = int(torch.tensor(shape).prod())
        bits = (enc["mask"][:, None] >> torch.arange(8, dtype=torch.uint8)) & 1
        mask = bits.reshape(-1)[:n].bool()
        flat = torch.zeros(n)
        flat[mask] = enc["values"]
        return flat.reshape(shape)
    return enc["w"]


@torch.no_grad()
def save_variant(model: GPT, path: str | Path, scheme: str = "fp32", group_size: int = 32) -> int:
    """Write model to `path` as scheme 'fp32' | 'int8' | 'int4' | 'pruned' (prune first) -> the file's bytes.

    int4 needs n_embd to be a multiple of group_size; the file holds the config, so
    `load_variant` rebuilds the model without anything else."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} must be one of {', '.join(SCHEMES)}")
    matrices = {"transformer.wte.weight", "transformer.wpe.weight"}
    matrices |= {f"transformer.h.{name}.weight" for name in prunable(model)}
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    shapes: dict[str, list[int]] = {}
    state = model.state_dict()
    for name, t in state.items():
        if name == "lm_head.weight" and getattr(model.config, "tie_weights", True):  # tied to wte
            continue
        shapes[name] = list(t.shape)
        big = name in matrices and scheme != "fp32"
        if scheme == "pruned" and name.startswith("transformer.w"):
            big = False  # pruning acts on the blocks' Linears only
        tensors[name] = _encode(t.cpu(), scheme if big else "fp32", group_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "scheme": scheme, "config": asdict(model.config), "shapes": shapes,
                "tensors": tensors}, path)
    return path.stat().st_size


@torch.no_grad()
def load_variant(path: str | Path, device: torch.device | str = "cpu", keep_quantized: bool = True) -> GPT:
    """The GPT in a file of `save_variant`, in eval mode. int8/int4 Linears of the blocks stay
    `QuantizedLinear` when keep_quantized (else everything is dequantized to fp32)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a file of minilm.generation.quantize.save_variant (format {FORMAT})")
    scheme = blob["scheme"]
    model = GPT(GPTConfig(**blob["config"]))
    state = {}
    for name, enc in blob["tensors"].items():
        kind = next(iter(enc))
        sub = {"q": scheme, "mask": "pruned"}.get(kind, "fp32")
        state[name] = _decode(enc, tuple(blob["shapes"][name]), sub)
    state.setdefault("lm_head.weight", state["transformer.wte.weight"])  # tied unless saved on its own
    model.load_state_dict(state)
    if keep_quantized and scheme in ("int8", "int4"):
        for name, lin in prunable(model).items():
            enc = blob["tensors"][f"transformer.h.{name}.weight"]
            parent = model.transformer.h.get_submodule(name.rsplit(".", 1)[0])
            setattr(parent, name.rsplit(".", 1)[1], QuantizedLinear(scheme, enc["q"], enc["scale"], lin.bias))
    return model.to(device).eval()
