"""Distillation losses as pure functions of tensors.

Shapes: ``B`` batch size, ``C`` number of labels, ``H``/``H_t`` student/teacher hidden width.
Knowledge distillation follows Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural
Network": the soft-target term is scaled by T^2 so its gradients keep the same magnitude as the
hard-label term when the temperature changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: label id of a row without a label (a transfer-set text): only the teacher's soft targets train on it
NO_LABEL = -100


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, reduction: str = "mean"
) -> torch.Tensor:
    """T^2 * KL(p_teacher || p_student), both distributions softened at temperature T.

    Args:
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]``, treated as a constant (no gradient flows into it).
        temperature: T > 0; 1 leaves the distributions as they are.
        reduction: "mean" over the batch (a scalar) or "none" (``[B]``, one value per row).

    Returns:
        The KL divergence times T^2: the batch mean, or ``[B]`` per row.
    """
    if temperature <= 0:
        raise ValueError(f"The temperature must be positive. Got {temperature} instead.")
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    per_row = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(dim=-1)
    per_row = per_row * temperature**2
    return per_row if reduction == "none" else per_row.mean()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """Mean over rows of alpha * CE + (1 - alpha) * T^2 * KL(p_teacher || p_student).

    A row labelled :data:`NO_LABEL` (an unlabelled transfer-set text) contributes the soft-target
    term alone, at full weight: the teacher is all there is to learn from on it.

    Args:
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]``.
        labels: ``[B]`` integer class ids, or ``NO_LABEL``.
        alpha: weight of the hard-label term on labelled rows, in [0, 1]; 1 ignores the teacher
            there, 0 ignores the labels.
        temperature: softening temperature T of the soft-target term.

    Returns:
        A scalar loss.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Got {alpha} instead.")
    labelled = labels != NO_LABEL
    hard = F.cross_entropy(student_logits, labels.clamp(min=0), reduction="none")
    if alpha == 1.0 and bool(labelled.all()):
        return hard.mean()  # the teacher is not consulted at all (and its logits may be absent)
    soft = soft_target_loss(student_logits, teacher_logits, temperature, reduction="none")
    per_row = torch.where(labelled, alpha * hard + (1.0 - alpha) * soft, soft)
    return per_row.mean()


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
