"""The scale benchmark's pure parts: WordNet's line parser, the phases read off a report, growth exponents.

Nothing here trains; ``benchmarks/scale.py --quick`` does and is not part of the suite.
"""

from __future__ import annotations

import csv
import gzip
import io
import math

import pytest

from benchmarks.scale_tables import climb_phases, growth_exponent, phase_of, ratio_sizes, recommendation_test
from benchmarks.wordnet import LEXNAMES, WordNetError, parse_line, parse_lines, wordnet_rows, write_csv

HEADER = [
    "  1 This software and database is being provided to you, the LICENSEE, by  \n",
    "  2 Princeton University under the following license.  By obtaining, using  \n",
]
BREATHE = (
    "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 021 * 00005041 v 0000 02 + 02 00 | "
    'draw air into, and expel out of, the lungs; "I can breathe better when the air is clean"; '
    '"The patient is respiring"  \n'
)
ENTITY = (
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known or inferred to have its "
    "own distinct existence (living or nonliving)  \n"
)


def test_lexnames_are_the_45_of_wordnet_3() -> None:
    assert len(LEXNAMES) == 45
    assert (LEXNAMES[0], LEXNAMES[3], LEXNAMES[29], LEXNAMES[43], LEXNAMES[44]) == (
        "adj.all",
        "noun.Tops",
        "verb.body",
        "verb.weather",
        "adj.ppl",
    )


def test_a_gloss_keeps_its_examples_and_takes_its_lexname() -> None:
    text, label = parse_line(BREATHE)
    assert label == "verb.body"
    assert text == (
        'draw air into, and expel out of, the lungs; "I can breathe better when the air is clean"; '
        '"The patient is respiring"'
    )


def test_the_licence_header_and_blank_lines_are_skipped() -> None:
    assert [label for _, label in parse_lines([*HEADER, "\n", ENTITY, BREATHE])] == ["noun.Tops", "verb.body"]


@pytest.mark.parametrize("line", ["00001740 45 n 01 x 0 000 | a gloss\n", "00001740 29 v 01 breathe 0 000\n"])
def test_a_line_with_a_bad_file_number_or_no_gloss_is_an_error(line: str) -> None:
    with pytest.raises(WordNetError):
        parse_line(line)


def test_the_folder_is_read_noun_verb_adj_adv_and_written_the_same_twice(tmp_path) -> None:
    (tmp_path / "data.noun").write_text("".join([*HEADER, ENTITY]))
    (tmp_path / "data.verb").write_text("".join([*HEADER, BREATHE]))
    (tmp_path / "data.adj").write_text("00001740 00 a 01 able 0 000 | having the necessary means\n")
    (tmp_path / "data.adv").write_text("00001837 02 r 01 barely 0 000 | only just\n")
    rows = wordnet_rows(tmp_path)
    assert [label for _, label in rows] == ["noun.Tops", "verb.body", "adj.all", "adv.all"]
    a, b = write_csv(rows, tmp_path / "a.csv.gz"), write_csv(rows, tmp_path / "b.csv.gz")
    assert a.read_bytes() == b.read_bytes()
    back = list(csv.reader(io.StringIO(gzip.decompress(a.read_bytes()).decode("utf-8"))))
    assert back == [["text", "label"], *[[t, y] for t, y in rows]]  # commas and quotes of the glosses survive


def test_a_missing_folder_says_which_package_to_install(tmp_path) -> None:
    with pytest.raises(WordNetError, match="apt-get install wordnet-base"):
        wordnet_rows(tmp_path / "nowhere")


def test_growth_exponent_is_the_log_log_slope() -> None:
    rows = [1000, 5000, 20000, 50000]
    assert growth_exponent(rows, [3.0 * r for r in rows]) == pytest.approx(1.0)
    assert growth_exponent(rows, [7.0 * r**2 for r in rows]) == pytest.approx(2.0)
    assert growth_exponent(rows, [5.0, 5.0, 5.0, 5.0]) == pytest.approx(0.0)
    # least squares over noisy points: slope of the fitted line, not of the end points
    noisy = [10.0, 60.0, 180.0, 520.0]
    x, y = [math.log(r) for r in rows], [math.log(c) for c in noisy]
    mx, my = sum(x) / 4, sum(y) / 4
    want = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)
    assert growth_exponent(rows, noisy) == pytest.approx(want)
    assert growth_exponent(rows, noisy) != pytest.approx(math.log(520 / 10) / math.log(50))


def test_growth_exponent_leaves_out_costs_that_are_not_positive() -> None:
    assert growth_exponent([1000, 5000, 20000], [0.0, 2.0, 8.0]) == pytest.approx(1.0)
    assert growth_exponent([1000, 5000], [0.0, 2.0]) is None
    assert growth_exponent([1000, 1000], [1.0, 2.0]) is None


def test_the_ratio_compares_the_largest_size_with_a_tenth_of_it() -> None:
    assert ratio_sizes([1000, 5000, 20000, 50000]) == (50000, 5000)
    assert ratio_sizes([500, 2000]) == (2000, 500)
    assert ratio_sizes([2000]) is None


def _run(
    role: str, step: str, wall: float, flops: float, rss: float, kind: str = "finetune", **details: object
) -> dict:
    rid = {"baseline": "baseline", "probe": f"{step}-probe"}.get(role, f"{step}-{role}")
    cost = {"wall_s": wall, "flops": flops, "energy_kwh": 0.001, "peak_rss_mb": rss}
    candidate = {"name": step.removesuffix("-probe"), "kind": kind}
    return {
        "run_id": rid,
        "key": {"role": role, "step": step},
        "candidate": candidate,
        "cost": cost,
        "details": details,
    }


def test_phases_group_runs_by_role_and_the_overhead_is_the_rest_of_the_wall_time() -> None:
    report = {
        "criteria": {"metric": "accuracy"},
        "baseline": _run("baseline", "", 10.0, 0.0, 900.0),
        "runs": [
            # a probe's data-size rung, keyed as the climb keys it: role sized, step the probe's full step
            _run("sized", "minilm-l3-probe", 4.0, 1e12, 1200.0, kind="probe", train_examples=250),
            _run("probe", "minilm-l3", 6.0, 3e12, 1300.0),
            _run("sized", "minilm-l3", 20.0, 5e13, 1500.0, train_examples=1000),
            _run("trial", "minilm-l3", 50.0, 2e14, 1400.0, test_cost={"wall_s": 3.0, "flops": 1e12}),
        ],
        "recommendation": {
            "run_id": "minilm-l3-trial",
            "intervals": {"test": {"accuracy": {"value": 0.6, "low": 0.58, "high": 0.62, "n": 2000}}},
        },
        "total_cost": {"wall_s": 93.0, "flops": 2.55e14, "energy_kwh": 0.01},
    }
    assert phase_of(report["runs"][0], {"minilm-l3-probe": "minilm-l3"}) == "probe minilm-l3"
    phases = climb_phases(report, climb_wall_s=100.0)
    assert phases["probe minilm-l3"]["wall_s"] == 10.0
    assert phases["probe minilm-l3"]["peak_rss_mb"] == 1300.0
    assert phases["probe minilm-l3"]["train_examples"] == [250]
    assert phases["fine-tune minilm-l3"]["flops"] == pytest.approx(2.5e14)
    assert phases["test scoring"]["wall_s"] == 3.0
    assert phases["tool overhead"]["wall_s"] == pytest.approx(100.0 - 10 - 10 - 70 - 3)
    assert phases["whole climb"]["wall_s"] == 100.0
    assert recommendation_test(report) == {
        "run_id": "minilm-l3-trial",
        "value": 0.6,
        "low": 0.58,
        "high": 0.62,
        "n": 2000,
    }


def test_cost_only_rows_repeat_with_a_marker_and_keep_every_class_when_fewer() -> None:
    from benchmarks.scale_cost import MIN_CLASS_ROWS, cost_only_rows

    rows = [(f"text {i}", "big") for i in range(200)] + [(f"rare {i}", "rare") for i in range(40)]
    more = cost_only_rows(rows, 500)
    assert len(more) == 500 and len({t for t, _ in more}) == 500
    assert sorted(more[:240]) == sorted(rows)
    assert more[240][0].endswith("[copy 1]") and more[480][0].endswith("[copy 2]")
    fewer = cost_only_rows(rows, 60)
    assert len(fewer) == 60 and sum(y == "rare" for _, y in fewer) >= MIN_CLASS_ROWS
    assert cost_only_rows(rows, 60) == fewer  # the same rows on every run


def test_results_are_named_from_the_data_slug_and_quick_fills_its_defaults(tmp_path) -> None:
    from benchmarks.common import data_slug
    from benchmarks.scale import parse_args, result_name

    data = write_csv([("a gloss", "x"), ("another", "y")], tmp_path / "my data v1.2" / "glosses.csv")
    args = parse_args(["--quick", "--data", str(data)])
    assert result_name(args)[0] == f"scale-{data_slug(str(data))}-quick"
    assert (args.sizes, args.cost_only, args.rungs, args.grow_from) == ([500, 2000], 20_000, "minilm-l3", 250)
    full = parse_args([])
    assert result_name(full)[0] == "scale-wordnet"
    assert (full.sizes, full.cost_only, full.grow_from) == ([1000, 5000, 20000, 50000], 200_000, 2000)


def test_a_missing_data_file_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys) -> None:
    from benchmarks.common import run_cli
    from benchmarks.scale import main

    out = tmp_path / "out"
    assert run_cli(main, ["--quick", "--data", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file or folder" in err
    assert not out.exists()


def test_the_arms_differ_only_in_the_data_size_rung_keys_and_an_old_config_runs_without_them(tmp_path) -> None:
    from benchmarks.scale import WITH, WITHOUT, _overrides, climb, parse_args

    args = parse_args(["--quick", "--set", "train.epochs=1"])
    with_, without = (_overrides(args, tmp_path, 0.6, arm, True, tmp_path / "o") for arm in (WITH, WITHOUT))
    assert set(with_) - set(without) == {"tuning.grow_from=250", "tuning.grow_factor=4"}
    assert set(without) - set(with_) == {"tuning.grow_from=null"}
    assert "ladder.rungs=[minilm-l3]" in without and without[-1] == "train.epochs=1"
    old = _overrides(args, tmp_path, 0.6, WITHOUT, False, tmp_path / "o")
    assert not any("grow" in o for o in old)
    skipped = climb(args, tmp_path, 500, 0.6, WITH, False, tmp_path)  # nothing runs
    assert "no tuning.grow_from" in skipped["skipped"] and not (tmp_path / "runs").exists()


def test_a_finished_job_is_read_back_and_a_changed_one_is_run_again(tmp_path) -> None:
    import json

    from benchmarks.common import BenchError
    from benchmarks.scale import run_child

    spec = {"job": "no-such-phase", "csv": "x.csv"}
    (tmp_path / "job.spec.json").write_text(json.dumps(spec))
    (tmp_path / "job.result.json").write_text(json.dumps({"wall_s": 1.5, "peak_rss_mb": 10.0}))
    assert run_child(spec, tmp_path, "job") == {"wall_s": 1.5, "peak_rss_mb": 10.0, "read_back": True}
    with pytest.raises(BenchError, match="job failed"):  # another job: run, and this one fails in its process
        run_child({**spec, "csv": "y.csv"}, tmp_path, "job")
    assert not (tmp_path / "job.result.json").exists()
