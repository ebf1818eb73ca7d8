"""BCE-with-logits + soft Dice on the single change logit."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - (2 sum(p t) + s) / (sum p + sum t + s) over the whole batch (batch-level Dice, so batches whose labels are
    all empty still give a useful gradient that pushes probabilities down)."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    denom = p.sum() + target.sum()
    return 1.0 - (2.0 * inter + smooth) / (denom + smooth)


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0, dice_weight: float = 1.0
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (total, bce, dice). ``target`` has the logits' shape with values in {0, 1}."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    dice = soft_dice_loss(logits, target)
    return bce_weight * bce + dice_weight * dice, bce, dice
