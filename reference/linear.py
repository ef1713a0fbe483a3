"""`Linear`: `nn.Linear` with a weight-first GEMM for the few-row products of decode steps.

For ``rows <= SMALL_ROWS`` on CPU it computes ``y^T = W x^T (+ b)`` with one ``mm``/``addmm``
and returns the transpose (a view). That is the same matrix product, the same FLOP count under
`FlopCounterMode` (``2 * rows * in * out``), and the same parameters; only the operand order
given to MKL differs. On this project's CPU (2-core AMD EPYC, MKL 2024.2, 2 threads) MKL runs
the weight-first layout markedly faster for skinny products: the 256 -> 50304 LM head of
vanilla_31 at 16-64 rows takes about 0.6-0.8x the time of ``x W^T``, and a whole greedy decode
step of vanilla_31 at batch 32 went from 37.5 to 27.1 ms (best of 5 interleaved runs), although
the argmax then reads the logits through a transposed view. Larger products and other devices
use `F.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SMALL_ROWS = 64


class Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if x.device.type != "cpu" or rows == 0 or rows > SMALL_ROWS:
            return F.linear(x, self.weight, self.bias)
        xt = x.reshape(rows, x.shape[-1]).T  # [in, rows]
        if self.bias is None:
            yt = torch.mm(self.weight, xt)  # [out, rows]
        else:
            yt = torch.addmm(self.bias[:, None], self.weight, xt)
        return yt.T.reshape(*x.shape[:-1], self.out_features)
