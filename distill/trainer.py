"""One small training loop for the three jobs of a distillation.

``fit`` trains a classifier on tokenised texts. Given cached teacher outputs it minimises the
distillation loss; without them it minimises plain cross-entropy, which serves both the teacher's
own fine-tune and the no-teacher control. The control uses the same student initialisation, data
order, steps and seed as the distilled student, so the difference between the two is what the
teacher added.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from advisor.criteria import compute_metrics
from distill.batching import encode, iter_batches, length_grouped_batches, pad_id_of
from distill.config import KDConfig
from distill.inference import meter_batch, predict
from distill.losses import distillation_loss, hidden_state_loss, mean_pool
from distill.teacher import TeacherOutputs


def fit(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    settings: KDConfig,
    *,
    seed: int,
    teacher: TeacherOutputs | None = None,
    meter: Any = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place, with the teacher's soft targets when given.

    Args:
        model: a sequence-classification model.
        tokenizer: its tokenizer (shared with the teacher when ``teacher`` is given).
        texts: training texts; ``teacher`` rows must be in the same order.
        labels: integer labels, one per text.
        settings: epochs, learning rate, batch size, alpha, temperature, hidden-state weight ...
        seed: seeds dropout, the data order and the projection's initialisation.
        teacher: cached teacher outputs; None trains on the labels only.
        meter: an open ``advisor.cost.Meter`` that training FLOPs and tokens are counted into.
        progress: called with a line every ~10% of the steps and at the end of each epoch.

    Returns:
        Training facts: steps, epochs, final mean loss of the last epoch.
    """
    say = progress or (lambda _msg: None)
    if teacher is not None and teacher.logits.shape[0] != len(texts):
        raise ValueError(f"Teacher outputs have {teacher.logits.shape[0]} rows for {len(texts)} texts.")
    torch.manual_seed(seed)
    encoded = encode(tokenizer, texts, settings.max_length)
    lengths = [len(r) for r in encoded]
    y = torch.tensor(list(labels), dtype=torch.long)
    pad_id = pad_id_of(tokenizer)
    config = getattr(model, "config", None)
    device = next(model.parameters()).device  # train where the caller put the model

    use_hidden = teacher is not None and settings.hidden_weight > 0
    projection: torch.nn.Module | None = None
    if use_hidden:
        assert teacher is not None
        width = int(getattr(model, "config").hidden_size)  # noqa: B009 (nn.Module types config as Tensor | Module)
        if width != teacher.pooled.shape[-1]:
            projection = torch.nn.Linear(width, teacher.pooled.shape[-1]).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if projection is not None:
        params += list(projection.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    batches_per_epoch = math.ceil(len(encoded) / settings.batch_size)
    total_steps = max(1, math.ceil(settings.epochs * batches_per_epoch))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total_steps), total_steps)

    model.train()
    every = max(1, total_steps // 10)  # a progress line every ~10% of training
    step, epoch = 0, 0
    last_losses: list[float] = []
    while step < total_steps:
        last_losses = []
        batches = length_grouped_batches(lengths, settings.batch_size, seed + epoch)
        for idx, batch in iter_batches(encoded, batches, pad_id):
            if step >= total_steps:
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(**batch, output_hidden_states=use_hidden)
            target = y[idx].to(device)
            if teacher is None:
                loss = torch.nn.functional.cross_entropy(out.logits, target)
            else:
                loss = distillation_loss(
                    out.logits, teacher.logits[idx].to(device), target, settings.alpha, settings.temperature
                )
                if use_hidden:
                    pooled = mean_pool(out.hidden_states[-1], batch["attention_mask"])
                    loss = loss + settings.hidden_weight * hidden_state_loss(
                        pooled, teacher.pooled[idx].to(device), projection
                    )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            meter_batch(meter, config, batch["attention_mask"], int(out.logits.shape[-1]), "train")
            last_losses.append(float(loss.detach()))
            step += 1
            if step % every == 0 and step < total_steps:
                say(f"  step {step}/{total_steps}: loss {np.mean(last_losses[-every:]):.4f}")
        epoch += 1
        say(f"  epoch {epoch}: mean loss {np.mean(last_losses):.4f} ({step}/{total_steps} steps)")
    model.eval()
    return {"steps": step, "epochs": settings.epochs, "final_loss": float(np.mean(last_losses))}


def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    label_names: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 64,
    meter: Any = None,
) -> dict[str, float]:
    """Accuracy, macro-F1 and the advisor's other metrics on labelled texts (eval FLOPs into ``meter``)."""
    logits, _ = predict(
        model, encode(tokenizer, texts, max_length), pad_id_of(tokenizer), batch_size=batch_size, meter=meter
    )
    return compute_metrics(list(labels), logits.argmax(dim=-1).tolist(), label_names)
