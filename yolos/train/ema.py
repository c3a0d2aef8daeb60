"""An exponential moving average of the weights: what fine-tuning evaluates and saves.

After every optimizer step, ``ema = d * ema + (1 - d) * weights`` with the decay ramped up from 0
(``d_t = decay * (1 - exp(-t / tau))``, as Ultralytics and RF-DETR do), so the first steps follow
the fine-tuned weights closely and the average only then smooths over ~``1 / (1 - decay)`` steps.
Buffers are copied as they are. The average is kept in fp32 on the model's device; its state
(the weights and the step count) goes into ``state.pt``, so a resumed run continues it exactly.
"""
from __future__ import annotations

import copy
import math

import torch

from ..distributed import unwrap

RAMP_STEPS = 100  # tau: the decay reaches 63% of its value after this many steps


class ModelEMA:
    """``ModelEMA(model, decay)``; ``update(model)`` after each optimizer step; ``module`` is the
    averaged model (eval mode, no gradients)."""

    def __init__(self, model, decay: float = 0.995, tau: float = RAMP_STEPS):
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = float(decay), float(tau), 0

    def decay_at(self, updates: int) -> float:
        return self.decay * (1 - math.exp(-updates / self.tau))

    @torch.no_grad()
    def update(self, model) -> None:
        self.updates += 1
        d = self.decay_at(self.updates)
        current = unwrap(model).state_dict()
        averaged, new = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                new.append(current[name].detach().to(value.dtype))
            else:
                value.copy_(current[name])
        # ema + (1 - d) (w - ema) in one pass over all tensors: tensor by tensor, d * ema + (1 - d) w
        # cost 1.5x the micro model's fused AdamW step (2.5 ms against 1.4 now; 2 threads, AMD).
        torch._foreach_lerp_(averaged, new, 1 - d)

    def state_dict(self) -> dict:
        return {"weights": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
                "updates": self.updates, "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
        self.decay, self.tau = float(state["decay"]), float(state["tau"])


__all__ = ["ModelEMA"]
