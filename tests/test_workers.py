"""Several advise workers share one study through a journal file: the trial budget is split, no trial runs twice."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import optuna
import yaml

from advisor.ledger import Ledger
from tests.conftest import make_tiny_model, synthetic_rows, write_csv


def test_two_workers_share_each_rungs_trial_budget(tmp_path: Path) -> None:
    rng = random.Random(0)
    # random labels: nothing reaches the floor, so the workers use the whole budget between them
    rows = [(text, rng.choice(["pos", "neg"])) for text, _ in synthetic_rows(120)]
    data = write_csv(tmp_path / "noise.csv", rows)
    rungs = []
    for i, name in enumerate(("tiny-a",)):
        folder = make_tiny_model(tmp_path / name, seed=i, layers=1)
        rungs.append(
            {
                "name": name,
                "source": str(folder),
                "description": name,
                "params_total": 10_000 * (i + 1),
                "params_non_embedding": 9_000 * (i + 1),
                "layers": 1,
                "hidden": 32,
            }
        )
    ladder = tmp_path / "ladder.yaml"
    ladder.write_text(yaml.safe_dump({"rungs": rungs}))
    journal = tmp_path / "study.journal"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    common = [
        "--data",
        str(data),
        "--ladder",
        str(ladder),
        "--target",
        "accuracy=0.99",
        "--set",
        f"tuning.storage=journal:{journal}",
        "--set",
        "tuning.trials_per_rung=3",
        "--set",
        "metering.codecarbon=false",
        "--set",
        "rules.enabled=false",
        "--set",
        "train.epochs=1",
        "--set",
        "tuning.epochs_max=1",
        "--set",
        "train.batch_size=16",
    ]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "advisor.cli", *common, "--out", str(tmp_path / f"w{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 1, err[-2000:]  # no model met the floor

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    for rung in ("tiny-a",):
        [summary] = [s for s in optuna.get_all_study_summaries(storage) if s.study_name.endswith(rung)]
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
        assert len(trials) == 3, [t.params for t in trials]  # the budget, not twice the budget
        params = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(params)) == 3  # no settings tried twice
    runs = []
    for i in range(2):
        with Ledger(tmp_path / f"w{i}") as led:
            runs += [r for r in led.all() if r.candidate.kind == "finetune"]
    assert len(runs) == 3  # each trial trained by exactly one worker
