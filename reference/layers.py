"""Decoder layer and the stack base class shared by every decoder in `reference`.

`DecoderLayer` (docs/model.md 1.6): ``ln_attn``, ``attn``, ``ln_mlp``, ``mlp``.
- parallel residual (GPT-NeoX): ``x + attn(ln_attn(x)) + mlp(ln_mlp(x))``;
- sequential (Llama): ``h = x + attn(ln_attn(x)); h + mlp(ln_mlp(h))``.

`DecoderStack` owns ``layers`` (ModuleList) and ``final_norm`` and runs them over a window of
positions ``c .. c+q-1``. Subclasses (the vanilla LM, the block decoder, the token decoder) add
their own input and output modules beside them, so module paths stay flat
(``layers.attn.qkv``, ``final_norm``, ``lm_head``) as the cost model names its operators.

Caches: `setup_cache(mode, batch, max_entries, role)` prepares every layer's `KVCache` and
selects the attention kind (``static``: preallocated, SDPA; ``hf-legacy``: torch.cat growth,
materialised scores; ``official``: torch.cat growth, and the attention kind the cost model's
profile gives the stack's `role`: SDPA in the vanilla model and the block decoder, materialised
scores in the token decoder, docs/published.md 1); `reset_cache()` drops them.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from costmodel.implementation import PROFILES, get_implementation
from costmodel.spec import StackSpec

from .attention import Attention, Step
from .mlp import make_mlp
from .norm import make_norm
from .rotary import rotary_table

InferenceMode = Literal["static", "hf-legacy", "official", "official-eager"]
INFERENCE_MODES: tuple[str, ...] = tuple(PROFILES)  # every cost-model profile


def check_mode(mode: str) -> InferenceMode:
    if mode not in INFERENCE_MODES:
        raise ValueError(f"mode: unknown inference mode {mode!r} "
                         f"(known: {', '.join(INFERENCE_MODES)})")
    return mode  # type: ignore[return-value]


def materializes(mode: InferenceMode, role: str) -> bool:
    """Whether `mode` runs the stack `role` with materialised scores: the cost model's profile
    of the same name decides (one rule for both sides, docs/published.md 1)."""
    return get_implementation(mode).attention_for(role) == "materialized"


class DecoderLayer(nn.Module):
    def __init__(self, stack: StackSpec) -> None:
        super().__init__()
        self.parallel_residual = stack.parallel_residual
        self.ln_attn = make_norm(stack)
        self.attn = Attention(stack)
        self.ln_mlp = make_norm(stack)
        self.mlp = make_mlp(stack)

    def forward(self, x: Tensor, step: Step) -> Tensor:
        # x: [B, q, D]
        if self.parallel_residual:
            return x + self.attn(self.ln_attn(x), step) + self.mlp(self.ln_mlp(x))
        h = x + self.attn(self.ln_attn(x), step)
        return h + self.mlp(self.ln_mlp(h))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """normal(0, std) for linears and embeddings, zero biases, unit/zero norms (docs/model.md 1.2-1.4)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.LayerNorm | nn.RMSNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class DecoderStack(nn.Module):
    """`n_layers` decoder layers plus ``final_norm``; positions are rotary indices."""

    def __init__(self, stack: StackSpec) -> None:
        super().__init__()
        if stack.sliding_window is not None:
            # the cost model models the window (docs/sliding-window.md); this reference does not
            raise ValueError("sliding_window: the PyTorch reference runs full attention only; "
                             "windowed models are predicted by the cost model but not built here")
        self.stack_spec = stack
        self.layers = nn.ModuleList(DecoderLayer(stack) for _ in range(stack.n_layers))
        self.final_norm = make_norm(stack)
        self._rope: tuple[Tensor, Tensor] | None = None

    # -- positions --------------------------------------------------------------------------
    def rope(self, n_positions: int) -> tuple[Tensor, Tensor]:
        """cos and signed-sin tables ``[>= n_positions, rotary_dims]`` (params device, dtype)."""
        ref = self.final_norm.weight
        rope = self._rope
        if (
            rope is None
            or rope[0].shape[0] < n_positions
            or rope[0].device != ref.device
            or rope[0].dtype != ref.dtype
        ):
            n = max(n_positions, 256 if rope is None else 2 * rope[0].shape[0])
            s = self.stack_spec
            with torch.inference_mode(False):  # a normal tensor: training may reuse it
                rope = rotary_table(n, s.rotary_dims, s.rotary_base, ref.device, ref.dtype)
            self._rope = rope
        return rope

    # -- caches -----------------------------------------------------------------------------
    def setup_cache(self, mode: InferenceMode, batch: int, max_entries: int,
                    role: str = "vanilla") -> None:
        """Caches for one request: static ``[B, K, max_entries, dh]`` buffers, or concat growth;
        `role` (vanilla, block_decoder, token_decoder) picks the stack's attention kind."""
        check_mode(mode)
        materialize = materializes(mode, role)
        ref = self.final_norm.weight
        s = self.stack_spec
        key_dtype = torch.float32 if get_implementation(mode).key_cache_fp32 else None
        blocked = padding = None
        if materialize and key_dtype is not None:
            # GPT-NeoX eager attention of the released code (docs/published.md 1): its causal
            # mask is a buffer sliced per forward, its padding mask (generate's all-ones
            # attention mask, made additive) a [B, 1, 1, n_k] tensor in the model's dtype
            blocked = torch.ones(max_entries, max_entries, dtype=torch.bool,
                                 device=ref.device).triu(1)
            padding = torch.zeros(batch, 1, 1, 1, max_entries, dtype=ref.dtype,
                                  device=ref.device)
        for layer in self.layers:
            layer.attn.kv_cache.setup(
                "static" if mode == "static" else "concat",
                batch, max_entries, s.kv_heads, s.dh, ref.device, ref.dtype, key_dtype,
            )
            layer.attn.core.materialize = materialize
            layer.attn.core.setup_neox_eager(blocked, padding)
        self.rope(max_entries)

    def reset_cache(self) -> None:
        for layer in self.layers:
            layer.attn.kv_cache.reset()
            layer.attn.core.materialize = False
            layer.attn.core.setup_neox_eager(None, None)

    def kv_cache_bytes(self) -> int:
        """Bytes held by this stack's caches now (static: the whole preallocated buffers)."""
        return sum(layer.attn.kv_cache.nbytes for layer in self.layers)

    # -- forward ----------------------------------------------------------------------------
    def run_layers(self, x: Tensor, c: int = 0, use_cache: bool = False) -> Tensor:
        """Layers and final norm over positions ``c .. c+q-1``; x: [B, q, D] -> [B, q, D].

        With ``use_cache`` the layer caches are read and written (c entries already cached);
        without, this is a plain causal forward (c must be 0).
        """
        n_q = x.shape[1]
        cos, sin = self.rope(c + n_q)
        step = Step(c=c, cos=cos[c : c + n_q], sin=sin[c : c + n_q], use_cache=use_cache)
        for layer in self.layers:
            x = layer(x, step)
        return self.final_norm(x)

    def run_layers_fixed(self, x: Tensor, pos: Tensor) -> Tensor:
        """Fixed-shape variant for one position at device index ``pos`` ([1] long).

        Writes the static caches with ``index_copy_`` and attends over the whole buffer under a
        mask, so every step has identical shapes (what `torch.compile(mode="reduce-overhead")`
        records as one CUDA graph). Attention then covers T_max keys, not c + 1: it is not the
        ``static`` profile the cost model counts.
        """
        k_buf = self.layers[0].attn.kv_cache.k
        if k_buf is None:
            raise RuntimeError("run_layers_fixed needs static caches (setup_cache('static', ...))")
        t_max = k_buf.shape[2]
        cos, sin = self.rope(t_max)
        mask = torch.arange(t_max, device=x.device)[None, :] <= pos[:, None]  # [1, T_max]
        step = Step(c=0, cos=cos[pos], sin=sin[pos], use_cache=True, pos=pos, mask=mask)
        for layer in self.layers:
            x = layer(x, step)
        return self.final_norm(x)
