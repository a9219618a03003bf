"""The configuration's sections: typed dataclasses whose defaults each say why they have their value.

:class:`advisor.config.settings.Config` gathers them (with :class:`~advisor.acceptance.AcceptanceCriteria`, the
``criteria`` section); :mod:`advisor.config.settings` resolves and checks them. :class:`OptimConfig` is
shared with distillation's teacher and students (``distill.config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataConfig:
    #: built-in dataset name (see ``advise --list-datasets``), a CSV/TSV/JSON/JSONL/Parquet file, a
    #: ``save_to_disk`` folder, or a hub id (online only). The default is the embedded demo.
    source: str = "uncertainty"
    #: column holding the text; detected when unset
    text_column: str | None = None
    #: column holding the label; detected when unset
    label_column: str | None = None
    #: share of rows held out for validation when the data has no validation split; unset (the
    #: default), it is sized from the floor: enough rows for an interval of +-validation_margin
    #: near the floor at criteria.confidence, between 15% and 35% of the rows (scoring rows costs
    #: inference only, training costs far more, so evidence is bought on the validation side)
    validation_fraction: float | None = None
    #: half-width of the validation interval the automatic split aims for near the floor: models
    #: further than this from the floor get a clear pass or fail rather than "undecided"
    validation_margin: float = 0.03
    #: share of rows held out for the final test when the data has no test split
    test_fraction: float = 0.15
    #: on a large dataset, a validation or test split carved out of it stops at this many rows (the
    #: validation split at more when the floor's interval needs more); the rest trains. Only data
    #: above 13,333 rows is affected (15% of it is more than 2,000). null: the fractions alone
    held_out_cap: int | None = 2000
    #: seed of the stratified split, fixed so reruns see the same rows
    split_seed: int = 0


@dataclass(frozen=True)
class LadderConfig:
    #: name of a ladder in configs/ladders/ (offline, hub) or a path to a ladder YAML
    name: str = "offline"
    #: restrict the climb to these rung names (all rungs when empty)
    rungs: list[str] = field(default_factory=list)
    #: where fetched offline checkpoints are kept (defaults to ~/.cache/greenladder/models)
    cache_dir: str | None = None
    #: a rung that meets the floor but fails only a latency/size/params ceiling is distilled into a
    #: half-depth student, judged like any rung (larger rungs would be slower and bigger still).
    #: The same student trained without the teacher is trained first and compared with the teacher
    #: (paired interval); when the teacher is not ahead, that cheaper student is what is judged
    distil_on_ceiling: bool = True
    #: unlabelled texts from the task's domain for that distillation (.txt, one per line, or a
    #: CSV/TSV/JSONL with the data's text column): the teacher's logits on them train the student
    distil_unlabeled: str | None = None
    #: perturbed copies of each labelled text added to that transfer set (``distill.augment``,
    #: 0 to 20): off, as in ``distill``: benchmarked, not shown to pay for its compute (BENCHMARKS.md §8)
    distil_augment: int = 0
    #: frozen-encoder probes: each encoder of the ladder also gives a rung that embeds every text
    #: once and fits a linear head (no gradient through the encoder). Probes are climbed with the
    #: fine-tunes in order of forecast compute; on sentiment and topic data a probe on a large
    #: encoder beat fine-tuned smaller ones at equal compute (docs/probes.md)
    probes: bool = True


@dataclass(frozen=True)
class OptimConfig:
    """The optimisation settings every fine-tune reads, with one default each: the advisor's rungs
    (:class:`TrainConfig`) and distillation's teacher and students (``distill.config``)."""

    #: the cheap, good default trial: small pre-trained encoders on a few thousand examples
    #: converge in ~3 epochs at this rate (measured on the built-in datasets)
    learning_rate: float = 1e-4
    epochs: float = 3.0
    batch_size: int = 32
    #: sentences and short documents fit; longer texts are truncated, not rejected
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01


@dataclass(frozen=True)
class TrainConfig(OptimConfig):
    #: freeze the word-embedding matrix (30k x H). benchmarks/step_cost.py on a quiet machine:
    #: 11-24% less time per step (batch 32 x 64 tokens); on the demo it cost accuracy (MiniLM-L3
    #: 0.703 vs 0.714, MiniLM-L6 0.764 vs 0.770), so it is off by default
    freeze_embeddings: bool = False
    #: mixed precision: "auto" is bf16 on GPUs that support it (Ampere and later), fp16 on older
    #: GPUs, fp32 on CPUs (CPU bf16 is emulated without avx512_bf16/amx_bf16 flags, and was slower
    #: here: benchmarks/throughput.py); or force "fp32", "bf16" (autocast, CPU too) or "fp16" (GPU)
    precision: str = "auto"
    torch_compile: bool = False
    #: evaluations on the validation split per epoch (feed early stopping, best-weight keeping and
    #: pruning). Each costs a forward pass over the validation split, about a third of a training
    #: step per row: with 2 per epoch evaluation was over a tenth of the demo's search FLOPs, with 1
    #: it is under (benchmarks/rules_ab.py measures it)
    evals_per_epoch: int = 1
    #: rows of the validation split scored at each evaluation during training (a fixed stratified
    #: sample; early stopping, best-weight keeping and pruning read it); the kept weights are then
    #: scored once on the whole split, and that pass is what is judged. Evaluating every epoch on all
    #: of an auto-sized split (up to 35% of the rows) was 15.7-21.8% of the demo climb's FLOPs; on the
    #: demo's split 64 rows keep it under a tenth (128 rows: 10.5%, by the tokens each pass computes).
    #: The choice between checkpoints rests on 64 rows (about +-12 points at 95%), so it is coarse; the
    #: judged figure is not. 0 scores the whole split each time
    eval_rows: int = 64
    seed: int = 0
    #: pickled .bin weights are refused unless this is set (then loaded with weights_only=True)
    allow_pickle: bool = False
    trust_remote_code: bool = False


@dataclass(frozen=True)
class TuningConfig:
    #: trials per rung; the first is always the TrainConfig default, so a rung that passes at once
    #: costs one training
    trials_per_rung: int = 2
    #: "tpe" (Bayesian) or "random" (for comparison)
    sampler: str = "tpe"
    #: stop a trial when, at an evaluation after its first epoch, it is worse than the rung's best finished
    #: trial at the same step on the same sampled rows (paired bootstrap at criteria.confidence, Bonferroni
    #: over the trial's evaluations); slightly behind, or behind on too few rows to tell, it trains on
    pruning: bool = True
    #: queue the train section's settings as each rung's first trial (off: the sampler picks every trial)
    default_first: bool = True
    #: queue the best settings of the rung below as each rung's second trial
    warm_start: bool = True
    #: after the default, try it again with the learning rate moved by ``probe_factor``: up when
    #: its validation loss was still falling at the last evaluation (under-trained), down when it
    #: had turned up or the run failed (too hot). Gives the sampler two distinct points per rung.
    probe: bool = True
    probe_factor: float = 3.0
    #: optuna storage shared by several advise workers (each with its own --out), e.g.
    #: "journal:/shared/study.log" or "postgresql://user@host/db"; they split each rung's trial
    #: budget between them. Unset: each run keeps its study in memory, rebuilt from its ledger.
    storage: str | None = None
    #: small experiment first: train each rung on this share of the training data, forecast the
    #: full-data metric, and skip the rung when even the optimistic forecast misses the floor
    #: (0 turns it off; it costs this share of a training per rung and pays on larger datasets)
    small_fraction: float = 0.0
    #: data-size rungs: on a training split of at least twice this many rows, each step (probe or
    #: fine-tune) is first run on a stratified prefix of this many rows, grown by ``grow_factor``
    #: while its learning curve says more rows can reach the floor, then on all rows (None: off)
    grow_from: int | None = 2000
    #: how much each data-size rung grows the rows (the last one is all rows)
    grow_factor: float = 4.0
    #: search space: learning rate range (log scale)
    lr_min: float = 2e-5
    lr_max: float = 3e-4
    #: search space: epochs range
    epochs_min: float = 1.0
    epochs_max: float = 4.0
    #: search space: warm-up ratio choices
    warmup_choices: list[float] = field(default_factory=lambda: [0.0, 0.1])


@dataclass(frozen=True)
class MeteringConfig:
    enabled: bool = True
    #: use codecarbon's offline tracker for energy; when off, energy is reported as not measured
    codecarbon: bool = True
    #: grid whose carbon intensity converts kWh to gCO2e (ISO 3166 alpha-3)
    country_iso_code: str = "USA"
    #: cloud provider and region, used instead of the country when both are set
    cloud_provider: str | None = None
    cloud_region: str | None = None


@dataclass(frozen=True)
class RulesConfig:
    """Training-health rules (stop broken runs) and early stopping on the criterion metric.

    Every default is set so that a healthy run is never cut short: the rules stop a run only when
    more steps cannot help, and early stopping only after a third of the run's evaluations (at
    least two) brought no new best, keeping the best weights either way.
    """

    enabled: bool = True
    #: the loss rules compare mean training loss over windows of at least this many steps
    loss_window: int = 20
    #: loss not moving: from loss_min_progress of training on, the latest window must be at least
    #: this much (relative) below the first window after warm-up or the very first. A run that learns has fallen far
    #: more than 1% by half-way; one that has not trains nothing
    loss_min_delta: float = 0.01
    #: ... judged only from this share of the run's steps on: a slow starter sat on a plateau for
    #: a quarter of its steps before learning (MiniLM-L3 on a sentiment set), so half, not earlier
    loss_min_progress: float = 0.5
    #: divergence: the latest window's mean loss above this multiple of the first window's (and a
    #: nat above it); a healthy run's windowed loss never triples
    divergence_factor: float = 3.0
    #: vanishing gradients: global gradient norm below this for loss_window steps
    vanishing_grad_norm: float = 1e-7
    #: stalled job: seconds without a training step; the hung step is interrupted
    stall_seconds: float = 600.0
    #: low utilisation (GPU only): average utilisation percent below which the rule fires
    low_gpu_util_percent: float = 10.0
    #: early stopping: stop once this share of the run's planned evaluations has passed without a
    #: new best of the criterion metric (the best weights are kept whether or not it stops)
    early_stop_share: float = 0.34
    #: ... and never before this many evaluations without a new best: one evaluation's dip is noise
    #: (a validation set of a few hundred rows moves by a point between evaluations)
    early_stop_min_patience: int = 2


@dataclass(frozen=True)
class IncrementalConfig:
    """How ``advise --from`` continues an earlier model on expanded data (advisor/incremental/executor.py)."""

    #: the continuation's first trial: the earlier winning learning rate times this (the model has
    #: already left its pre-trained start; a full rate would undo part of what it learned)
    lr_factor: float = 0.33
    #: the continuation's first trial trains this many epochs (the earlier run trained several)
    epochs: float = 1.0
    #: share of the earlier training rows replayed beside all new rows; 1.0 trains on every row.
    #: Below 1 puts the emphasis on new rows and saves compute; benchmarks/incremental.py measures it
    replay_fraction: float = 1.0
    #: new labels in the expanded data: extend the classifier head (the old classes keep their
    #: weights) instead of stopping with an error
    extend_head: bool = False
    #: also train the same rung from its pre-trained checkpoint on the expanded data, to measure
    #: (not forecast) what continuing saved
    compare_scratch: bool = False
    #: when the continued model fails the criteria on the expanded data, climb on from the rung
    #: above it in the same run directory (advisor/incremental/resumption.py says why above); false stops there
    resume_climb: bool = True


@dataclass(frozen=True)
class OutputConfig:
    #: run directory: ledger, reports, recommended model, logs
    out: str = "runs/advise"
    #: keep checkpoints of rungs that were not recommended (deleted by default: storing
    #: artifacts nobody needs costs energy too)
    keep_checkpoints: bool = False
    #: when no run passes, keep the checkpoint of the run that came closest (the report names it)
    keep_closest: bool = True
