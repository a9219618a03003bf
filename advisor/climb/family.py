"""The Bonferroni family: the candidates a climb judges on the same validation rows, and the level
every verdict is decided at so that picking the best of them does not turn noise into a pass.

Fixed before the climb starts (every planned trial, probe, data-size rung and student counts), so a
verdict does not depend on how far the climb got. :func:`verdicts` judges every recorded run at it.
"""

from __future__ import annotations

from collections.abc import Sequence

from advisor.climb.evidence import Evidence, RungInfo
from advisor.config.settings import Config
from advisor.outcome import Verdict
from advisor.verdicts.criteria import judge, run_interval
from advisor.verdicts.stats import bonferroni


def candidates_planned(evidence: Evidence, config: Config) -> int:
    """How many runs the climb may judge as candidates on the validation rows (the Bonferroni family).

    The baseline, every planned trial of every rung, and one distilled student when distillation
    is on, plus the candidates judged before the climb (``evidence.prior_candidates``). Fixed before
    the climb starts, so a verdict does not depend on how far the climb got.
    """
    return 1 + rung_candidates(evidence.rungs, config) + evidence.prior_candidates


def rung_candidates(rungs: Sequence[RungInfo], config: Config) -> int:
    """Candidates the climb's steps may put on the validation rows: every fine-tune trial, every probe,
    every data-size rung, and one student."""
    climbed = [r for r in rungs if not r.optional or r.name in config.ladder.rungs]
    single = sum(1 for r in climbed if r.method == "probe" or r.rows is not None)  # one run each
    trials = (len(climbed) - single) * config.tuning.trials_per_rung
    return single + trials + (1 if config.ladder.distil_on_ceiling else 0)


def decision_level(evidence: Evidence, config: Config) -> float:
    return bonferroni(config.criteria.confidence, candidates_planned(evidence, config))


def verdicts(evidence: Evidence, config: Config, rule: str = "interval") -> dict[str, Verdict]:
    """Every recorded run judged at the decision level (small experiments are not candidates)."""
    level = decision_level(evidence, config)
    out: dict[str, Verdict] = {}
    for run in evidence.runs:
        if run.key.role == "small":
            continue
        iv = run_interval(run, config.criteria.metric, evidence.val_labels, evidence.num_labels, level)
        out[run.run_id] = judge(run, config.criteria, iv, rule=rule)
    return out
