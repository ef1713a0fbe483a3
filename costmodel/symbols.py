"""Every sympy symbol of the cost model, in one place, with its meaning and unit.

Notation follows docs/model.md 1.1: V vocabulary, L_B block length, P prefix length; a stack has N
layers of width D, H query heads, K key/value heads of size d_h and an MLP of width F. Stack
symbols carry a subscript: none for a vanilla model, ``b`` for the block decoder, ``t`` for the
token decoder. The workload is batch B, prompt S tokens, G generated tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import sympy as sp


def _int(name: str) -> sp.Symbol:
    return sp.Symbol(name, positive=True, integer=True)


def _pos(name: str) -> sp.Symbol:
    return sp.Symbol(name, positive=True)


# Workload
B = _int("B")  # batch (sequences decoded in lockstep)
S = _int("S")  # prompt tokens
G = _int("G")  # generated tokens
# Summation indices (never arguments of compiled functions)
c = sp.Symbol("c", integer=True, nonnegative=True)  # cached entries before a forward
j = sp.Symbol("j", integer=True, positive=True)  # generated block index
k = sp.Symbol("k", integer=True, positive=True)  # token index inside a block

# Vocabulary and Block Transformer shape
V = _int("V")
L_B = _int("L_B")
P = _int("P")

# Bytes per element (Implementation)
s_w = _pos("s_w")  # linear weights (costmodel.precision)
s_a = _pos("s_a")  # activations
s_kv = _pos("s_kv")  # KV cache

# Hardware (achievable rates after efficiencies; see costmodel.hardware)
pi = _pos("pi")  # compute, FLOP/s
beta = _pos("beta")  # memory bandwidth, bytes/s
eta_ov = sp.Symbol("eta_ov", nonnegative=True)  # overlap of T_math with T_mem in an op, 0..1
t_kernel = sp.Symbol("t_kernel", nonnegative=True)  # fixed time per kernel launch, s
t_forward = sp.Symbol("t_forward", nonnegative=True)  # fixed time per forward call, s
M_cap = _pos("M_cap")  # device memory capacity, bytes
M_res = sp.Symbol("M_res", nonnegative=True)  # memory kept free (reserve), bytes
# fixed time per HF generate() call (config checks, logits processors), s (docs/published.md 1)
t_generate = sp.Symbol("t_generate", nonnegative=True)

# Sliding-window attention (docs/sliding-window.md): keys a query can see, tokens
W = _int("W")


# Precision (costmodel.precision, docs/precision.md); appended after the symbols above
s_wc = sp.Symbol("s_wc", nonnegative=True)  # bytes per linear output channel (channel scale)
s_e = _pos("s_e")  # bytes per dense parameter outside linears (embeddings, norms, biases)
s_kvs = sp.Symbol("s_kvs", nonnegative=True)  # bytes per cached K or V vector (int8 scale)
q_w = sp.Symbol("q_w", nonnegative=True)  # dequantisation FLOPs per linear weight element
q_kv = sp.Symbol("q_kv", nonnegative=True)  # (de)quantisation FLOPs per KV element read/written
pi_v = _pos("pi_v")  # achievable vector (non-matmul) compute, FLOP/s, for dequantisation


class StackSymbols(NamedTuple):
    N: sp.Symbol  # layers
    D: sp.Symbol  # width
    H: sp.Symbol  # query heads
    K: sp.Symbol  # key/value heads
    d_h: sp.Symbol  # head dim
    F: sp.Symbol  # MLP width


def stack_symbols(sub: str = "") -> StackSymbols:
    suffix = f"_{sub}" if sub else ""
    return StackSymbols(*(_int(f"{n}{suffix}") for n in ("N", "D", "H", "K", "d_h", "F")))


VANILLA = stack_symbols("")
BLOCK_DEC = stack_symbols("b")
TOKEN_DEC = stack_symbols("t")

HARDWARE_SYMBOLS = (pi, beta, eta_ov, t_kernel, t_forward, M_cap, M_res, t_generate)
BYTES_SYMBOLS = (s_w, s_a, s_kv)
WORKLOAD_SYMBOLS = (B, S, G)
WINDOW_SYMBOLS = (W,)
PRECISION_SYMBOLS = (s_wc, s_e, s_kvs, q_w, q_kv, pi_v)

LEGEND: dict[str, str] = {
    "B": "batch size (sequences)",
    "S": "prompt length, tokens",
    "G": "generated tokens",
    "c": "cached entries before a forward",
    "j": "generated block index",
    "k": "token index inside a block",
    "V": "vocabulary size",
    "L_B": "block length, tokens per block",
    "P": "prefix length (expansion ratio)",
    "N": "layers",
    "D": "model width",
    "H": "attention (query) heads",
    "K": "key/value heads",
    "d_h": "head dimension",
    "F": "MLP width",
    "s_w": "bytes per linear weight element (group scales and zero points included)",
    "s_a": "bytes per activation element",
    "s_kv": "bytes per KV-cache element",
    "pi": "achievable compute, FLOP/s",
    "beta": "achievable memory bandwidth, bytes/s",
    "eta_ov": "overlap of an op's compute with its memory traffic (1: roofline max, 0: sum)",
    "t_kernel": "fixed time per kernel launch, s",
    "t_forward": "fixed time per forward call, s",
    "M_cap": "device memory capacity, bytes",
    "M_res": "memory reserve, bytes",
    "s_wc": "bytes per linear output channel (per-channel scale)",
    "s_e": "bytes per parameter outside linears (embeddings, norms, biases)",
    "s_kvs": "bytes per cached K or V vector (int8 KV scale)",
    "q_w": "dequantisation FLOPs per linear weight element",
    "q_kv": "(de)quantisation FLOPs per KV-cache element read or written",
    "pi_v": "achievable vector compute for dequantisation, FLOP/s",
    "t_generate": "fixed time per generate() call (HF generation loop set-up), s",
    "W": "attention window (sliding-window attention): keys a query sees, tokens",
}

# Parallelism (docs/parallelism.md): degrees and the interconnect of the alpha-beta model
tp = _int("tp")  # tensor-parallel degree (ranks sharing every layer)
pp = _int("pp")  # pipeline stages
beta_link = _pos("beta_link")  # interconnect bandwidth per direction, bytes/s
alpha_link = sp.Symbol("alpha_link", nonnegative=True)  # latency per collective step, s

PARALLEL_SYMBOLS = (tp, pp, beta_link, alpha_link)
LEGEND |= {
    "tp": "tensor-parallel degree (GPUs sharing each layer)",
    "pp": "pipeline-parallel stages",
    "beta_link": "interconnect bandwidth per direction, bytes/s",
    "alpha_link": "interconnect latency per collective step, s",
}
