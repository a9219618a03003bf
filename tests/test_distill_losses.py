"""The distillation losses: the formula, the T^2 scaling, and alpha at its extremes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distill.losses import distillation_loss, hidden_state_loss, mean_pool, soft_target_loss


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    student = torch.randn(8, 5, generator=g)
    teacher = torch.randn(8, 5, generator=g) * 3
    labels = torch.randint(0, 5, (8,), generator=g)
    return student, teacher, labels


def test_soft_target_loss_is_t_squared_times_kl_teacher_to_student(logits):
    student, teacher, _ = logits
    t = 3.0
    p_t = F.softmax(teacher / t, dim=-1)
    p_s = F.softmax(student / t, dim=-1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(dim=-1).mean()
    assert soft_target_loss(student, teacher, t).item() == pytest.approx(t * t * kl.item(), rel=1e-5)


def test_soft_target_loss_is_zero_when_student_matches_teacher(logits):
    _, teacher, _ = logits
    assert soft_target_loss(teacher.clone(), teacher, 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_t_squared_keeps_soft_gradients_on_the_same_scale():
    # Hinton et al.: soft-target gradients shrink as 1/T^2; the T^2 factor restores their scale.
    # For small logits the gradient of KL at temperature T is ~ (s - t) / (C * T^2); times T^2 it no
    # longer depends on T.
    teacher = torch.tensor([[0.05, -0.02, 0.01]])
    grads = []
    for t in (2.0, 8.0):
        student = torch.zeros(1, 3, requires_grad=True)
        soft_target_loss(student, teacher, t).backward()
        grads.append(student.grad.norm().item())
    assert grads[0] == pytest.approx(grads[1], rel=0.1)


def test_alpha_one_is_plain_cross_entropy(logits):
    student, teacher, labels = logits
    assert distillation_loss(student, teacher, labels, 1.0, 2.0).item() == pytest.approx(
        F.cross_entropy(student, labels).item()
    )


def test_alpha_zero_ignores_labels(logits):
    student, teacher, labels = logits
    other_labels = (labels + 1) % 5
    a = distillation_loss(student, teacher, labels, 0.0, 2.0)
    b = distillation_loss(student, teacher, other_labels, 0.0, 2.0)
    assert a.item() == pytest.approx(b.item())
    assert a.item() == pytest.approx(soft_target_loss(student, teacher, 2.0).item())


def test_alpha_mixes_the_two_terms(logits):
    student, teacher, labels = logits
    hard = F.cross_entropy(student, labels).item()
    soft = soft_target_loss(student, teacher, 2.0).item()
    assert distillation_loss(student, teacher, labels, 0.3, 2.0).item() == pytest.approx(0.3 * hard + 0.7 * soft)


def test_teacher_receives_no_gradient(logits):
    student, teacher, labels = logits
    teacher = teacher.clone().requires_grad_(True)
    distillation_loss(student.requires_grad_(True), teacher, labels, 0.5, 2.0).backward()
    assert teacher.grad is None


@pytest.mark.parametrize("alpha, temperature", [(-0.1, 2.0), (1.5, 2.0), (0.5, 0.0)])
def test_bad_settings_are_refused(logits, alpha, temperature):
    student, teacher, labels = logits
    with pytest.raises(ValueError):
        distillation_loss(student, teacher, labels, alpha, temperature)


def test_hidden_state_loss_needs_a_projection_when_widths_differ():
    student, teacher = torch.randn(4, 8), torch.randn(4, 16)
    with pytest.raises(ValueError, match="projection"):
        hidden_state_loss(student, teacher)
    loss = hidden_state_loss(student, teacher, torch.nn.Linear(8, 16))
    assert loss.ndim == 0 and math.isfinite(loss.item())


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).item() == pytest.approx(2.0)


def test_an_unlabelled_row_learns_from_the_teacher_alone(logits):
    from distill.losses import NO_LABEL

    student, teacher, labels = logits
    unlabelled = torch.full_like(labels, NO_LABEL)
    assert torch.allclose(
        distillation_loss(student, teacher, unlabelled, 0.7, 2.0), soft_target_loss(student, teacher, 2.0)
    )
    mixed = labels.clone()
    mixed[0] = NO_LABEL  # one transfer row among labelled ones: soft term only on it, the mix on the others
    per_row = soft_target_loss(student, teacher, 2.0, reduction="none")
    hard = torch.nn.functional.cross_entropy(student, labels, reduction="none")
    want = torch.cat([per_row[:1], 0.7 * hard[1:] + 0.3 * per_row[1:]]).mean()
    assert torch.allclose(distillation_loss(student, teacher, mixed, 0.7, 2.0), want)
