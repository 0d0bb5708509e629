"""Losses for noisy labels and shared features: symmetric cross-entropy (a head loss) and the
supervised contrastive loss on a feature embedding (an auxiliary loss).

Notation as in ``_classification``: z = logits [N, C], p = softmax(z), y = target,
valid = {i : y_i != ignore_index}; means are over valid rows, and with none the result is a zero
connected to the graph.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import HeadLoss, prepare
from ._checks import compute_dtype, masked_mean, outside_autocast
from ._params import IGNORE_INDEX, SymmetricCrossEntropyParams, check_number, check_symmetric_params


def symmetric_ce_loss(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    check_targets: bool = True,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
) -> Tensor:
    """Symmetric cross-entropy (Wang et al., 2019), robust to noisy labels:

        loss_i = alpha * CE_i + beta * RCE_i,   RCE_i = -sum_j p_ij log q_ij = -A * (1 - p_{i, y_i})

    with q the one-hot label and log 0 clipped to A = log_zero. alpha = 1, beta = 0 is CE.
    """
    check_symmetric_params(alpha, beta, log_zero)
    z, y, valid = prepare(logits, target, num_classes=num_classes, ignore_index=ignore_index,
                          outputs=num_classes, check_targets=check_targets)
    log_p_t = F.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]
    per_sample = alpha * -log_p_t + beta * -log_zero * (1 - log_p_t.exp())
    return masked_mean(per_sample, valid)


class SymmetricCrossEntropyLoss(HeadLoss):
    """Module form of `symmetric_ce_loss` (see its docstring for the formula); keywords:
    `SymmetricCrossEntropyParams`."""

    Params = SymmetricCrossEntropyParams

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return symmetric_ce_loss(logits, target, num_classes=self.num_classes, ignore_index=self.ignore_index,
                                 check_targets=self.check_targets, alpha=self.alpha, beta=self.beta,
                                 log_zero=self.log_zero)


def supcon_loss(features: Tensor, labels: Tensor, *, temperature: float = 0.1, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Supervised contrastive loss (Khosla et al., 2020) on an embedding, InfoNCE with the rows of
    the same label as positives. With u = features / ||features||, s_ij = u_i . u_j / temperature:

        loss_i = -1/|P(i)| sum_{j in P(i)} log( exp(s_ij) / sum_{a != i, a valid} exp(s_ia) )

    P(i) = {j != i valid : y_j = y_i}. A row without a positive (alone in its class, or ignored)
    is left out, never inf or NaN; the mean is over the rows with one.
    """
    check_number("temperature", temperature, strict=True)
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be [N, F] and labels [N], but got {list(features.shape)} and "
                         f"{list(labels.shape)}")
    u = F.normalize(compute_dtype(features), dim=1)
    valid = labels != ignore_index
    n = len(labels)
    others = valid[None, :] & ~torch.eye(n, dtype=torch.bool, device=labels.device)
    # Excluded pairs get a large finite negative logit, not -inf: 0 * -inf would be NaN below.
    logits = outside_autocast(lambda: (u @ u.T / temperature).masked_fill(~others, -1e9), device=u.device)
    log_prob = F.log_softmax(logits, dim=1)
    positive = others & (labels[:, None] == labels[None, :]) & valid[:, None]
    count = positive.sum(dim=1)
    per_row = -torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1) / count.clamp(min=1)
    return masked_mean(per_row, count > 0)
