"""Distillation losses as pure functions of tensors.

Shapes: ``B`` batch size, ``C`` number of labels, ``H``/``H_t`` student/teacher hidden width.
Knowledge distillation follows Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural
Network": the soft-target term is scaled by T^2 so its gradients keep the same magnitude as the
hard-label term when the temperature changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(p_teacher || p_student), both distributions softened at temperature T.

    Args:
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]``, treated as a constant (no gradient flows into it).
        temperature: T > 0; 1 leaves the distributions as they are.

    Returns:
        A scalar: the batch mean of the KL divergence, times T^2.
    """
    if temperature <= 0:
        raise ValueError(f"The temperature must be positive. Got {temperature} instead.")
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(p_teacher || p_student).

    Args:
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]``.
        labels: ``[B]`` integer class ids.
        alpha: weight of the hard-label term, in [0, 1]; 1 ignores the teacher, 0 ignores labels.
        temperature: softening temperature T of the soft-target term.

    Returns:
        A scalar loss.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Got {alpha} instead.")
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 1.0:
        return hard
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    if alpha == 0.0:
        return soft
    return alpha * hard + (1.0 - alpha) * soft


def hidden_state_loss(
    student_pooled: torch.Tensor,
    teacher_pooled: torch.Tensor,
    projection: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Mean squared error between pooled final hidden states, through a learned projection.

    The pooled state (mean over real tokens of the last layer) is used rather than every token's
    state so the teacher's side can be cached on disk at ``[N, H_t]`` instead of ``[N, L, H_t]``.

    Args:
        student_pooled: ``[B, H]``.
        teacher_pooled: ``[B, H_t]``.
        projection: maps ``H`` to ``H_t``; required when the widths differ, trained with the student.

    Returns:
        A scalar loss.
    """
    projected = projection(student_pooled) if projection is not None else student_pooled
    if projected.shape[-1] != teacher_pooled.shape[-1]:
        raise ValueError(
            f"Student width {projected.shape[-1]} differs from teacher width {teacher_pooled.shape[-1]}; "
            "pass a projection."
        )
    return F.mse_loss(projected, teacher_pooled.detach())


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token states over the real (unmasked) tokens.

    Args:
        hidden: ``[B, L, H]``.
        attention_mask: ``[B, L]`` with 1 for real tokens and 0 for padding.

    Returns:
        ``[B, H]``.
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
