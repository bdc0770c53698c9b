"""The opt-in fast path (``arena run --fast``): how the host speeds up an attack's passes.

Attacks spend their time in forward and backward passes through the target (or a surrogate).
On the fast path the host hands them the model compiled with ``torch.compile`` (dynamic shapes,
since early stopping shrinks the batch), run under bfloat16 autocast, with TF32 matrix products
on CUDA for what stays in float32. The host still judges every ``x_adv`` with the plain float32
model, so reduced precision can only change which points an attack finds, never how they are
scored; the fast path is recorded in each result's identity and provenance.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class FastModel(nn.Module):
    """A frozen model as attacks see it on the fast path: compiled, under bfloat16 autocast,
    returning float32 logits."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.compiled = torch.compile(model, dynamic=True)
        self.device_type = device.type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.compiled(x).float()


@contextlib.contextmanager
def tf32_matmul(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """TF32 for float32 matrix products and convolutions on CUDA, restored afterwards."""
    if not enabled or device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
