"""The report from a synthetic results folder: 1 and 5 seeds, failed rows, missing metric columns, plots."""

from __future__ import annotations

import hashlib
import json
import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from bench import docs, power, stats
from bench import plots as plots_module
from bench.analysis import analyse
from bench.config import FINE_TUNE, TrainConfig
from bench.docs import DOCS
from bench.fit import logging_steps
from bench.matrix import build_matrix
from bench.metric_table import METRIC_RANGE, METRICS
from bench.plots import file_stem
from bench.report import CLIPPED_NOTE, HOW_TO_READ, ONLY_FINAL_HISTORY, STATS_FILE, render_report, write_report
from bench.report_guide import SELECTION_GUIDE
from bench.results import LOG_HISTORY_FILE, PREDICTIONS_FILE, RUNS_DIR
from bench.runner import run_matrix

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSIFICATION = {"rt_polarity": "accuracy", "sms_spam": "f1_macro", "trec": "f1_macro", "trec@noise=0.2": "f1_macro"}
CLASSIFICATION_LOSSES = ("cross_entropy", "focal", "dice", "weighted_cross_entropy")
REGRESSION_LOSSES = ("mse", "mae", "huber")
# weighted_cross_entropy raises the rarest class's recall by 0.2 on every classification task; dice is far worse.
EFFECTS = {"focal": 0.005, "dice": -0.3, "weighted_cross_entropy": 0.0, "mae": -0.01, "huber": 0.0}


def _run_id(name: str) -> str:
    """A run id of the real form (16 hex digits), stable for a name."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _row(task: str, loss: str, seed: int, rng: np.random.Generator, extra_metrics: bool) -> dict:
    classification = task in CLASSIFICATION
    row = {
        "run_id": _run_id(f"{task}-{loss}-{seed}"),
        "status": "ok",
        "task": task,
        "task_base": task.split("@")[0],
        "task_version": "1.0",
        "problem_type": "classification" if classification else "regression",
        "main_metric": CLASSIFICATION.get(task, "pearson"),
        "loss": loss,
        "loss_spec": loss,
        "seed": seed,
        "model": "tiny",
        "train_examples": 450,
        "test_examples": 700,
        "train_seconds": 9.0 + rng.random(),
        "train_samples_per_second": 48.0 + rng.random(),
        "peak_rss_mb": 1400.0 + 10 * rng.random(),
    }
    effect = EFFECTS.get(loss, 0.0)
    seed_shift = 0.02 * (seed - 2)  # shared by every loss of one seed: what pairing removes
    if classification:
        row.update(
            {
                f"test_{metric}": 0.7 + seed_shift + effect + 0.003 * rng.standard_normal()
                for metric in ("accuracy", "f1_macro", "mcc")
            }
        )
        if extra_metrics:
            rare = 0.4 + seed_shift + (0.2 if loss == "weighted_cross_entropy" else 0.0) + 0.005 * rng.standard_normal()
            row.update(
                {
                    "test_recall_macro": 0.7 + seed_shift + 0.003 * rng.standard_normal(),
                    "test_recall_rarest": rare,
                    "test_ece": 0.05 + 0.01 * rng.random(),
                    "test_brier": 0.4 + 0.01 * rng.random(),
                    "test_nll": 0.6 + 0.01 * rng.random(),
                }
            )
    else:
        row.update(
            {
                "test_pearson": 0.6 + seed_shift + effect + 0.003 * rng.standard_normal(),
                "test_spearman": 0.6 + seed_shift + 0.003 * rng.standard_normal(),
                "test_mse": 2.6 - seed_shift + 0.01 * rng.standard_normal(),
                "test_mae": 1.4 + 0.01 * rng.standard_normal(),
            }
        )
        if extra_metrics:
            row.update({"test_r2": 0.3 + 0.01 * rng.random(), "test_mae_rare": 2.0, "test_mae_common": 1.2})
    return row


def synthetic_results(
    out, seeds: int, *, failed: bool = False, extra_metrics: bool = True, files: bool = True
) -> pd.DataFrame:
    """A results folder: runs.csv (+ skipped and, if asked, failed rows) and each run's log history / predictions."""
    rng = np.random.default_rng(0)
    rows = []
    for task in (*CLASSIFICATION, "vader_movies"):
        losses = CLASSIFICATION_LOSSES if task in CLASSIFICATION else REGRESSION_LOSSES
        rows += [_row(task, loss, seed, rng, extra_metrics) for loss in losses for seed in range(seeds)]
    rows.append(
        {"run_id": "skip-" + _run_id("skip-1"), "status": "skipped", "task": "trec", "task_version": "1.0",
         "problem_type": "classification", "main_metric": "f1_macro", "loss": "mse", "loss_spec": "mse",
         "message": "mse supports regression"}
    )  # fmt: skip
    if failed:
        rows += [
            {**_row("trec", "focal", seeds, rng, extra_metrics), "run_id": _run_id("err-1"), "status": "error",
             "error_type": "RuntimeError", "message": "boom in focal"},
            {"run_id": _run_id("div-1"), "status": "diverged", "task": "sms_spam", "task_version": "1.0",
             "problem_type": "classification", "main_metric": "f1_macro", "loss": "dice", "loss_spec": "dice",
             "seed": seeds, "error_type": "FloatingPointError", "message": "loss became NaN at step 12"},
        ]  # fmt: skip
        for column in [c for c in rows[-2] if c.startswith("test_")]:
            rows[-2][column] = np.nan
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "runs.csv", index=False)
    if files:
        for row in rows:
            if row["status"] == "ok":
                _write_run_files(out, row, rng)
    return frame


def _write_run_files(out, row: dict, rng: np.random.Generator) -> None:
    run_dir = out / RUNS_DIR / row["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    metric = f"eval_{row['main_metric']}"
    history = []
    for step in (10, 20, 30):
        history.append({"loss": 1.0 / step + 0.01 * rng.random(), "step": step, "epoch": step / 30})
        history.append({metric: 0.5 + step / 100, "step": step, "epoch": step / 30})
    history.append({"train_runtime": 9.0, "train_loss": 0.05, "step": 30})
    (run_dir / LOG_HISTORY_FILE).write_text(json.dumps(history))
    if row["problem_type"] == "classification":
        labels = rng.integers(0, 2, size=200)
        logits = rng.normal(size=(200, 2)) + 2.0 * np.eye(2)[labels]
        np.savez(run_dir / PREDICTIONS_FILE, logits=logits, labels=labels)


def _assert_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def _headline(report: str) -> str:
    return report[report.index("## Headline findings") : report.index("## Environment and matrix")]


def test_report_with_five_seeds_states_findings_that_match_the_statistics(tmp_path):
    runs = synthetic_results(tmp_path, seeds=5)
    report = write_report(tmp_path).read_text()
    headline = _headline(report)

    # Independently: weighted_cross_entropy vs cross_entropy on the rarest class's recall, paired by seed, with Holm
    # across the three other losses of the task.
    ok = runs[(runs["task"] == "sms_spam") & (runs["status"] == "ok")]
    base = ok[ok["loss_spec"] == "cross_entropy"].set_index("seed")["test_recall_rarest"]
    pvalues, diffs = {}, {}
    for loss in ("dice", "focal", "weighted_cross_entropy"):
        values = ok[ok["loss_spec"] == loss].set_index("seed")["test_recall_rarest"]
        diffs[loss] = values - base
        pvalues[loss] = scipy_stats.ttest_rel(values, base).pvalue
    holm = dict(zip(pvalues, multipletests(list(pvalues.values()), method="holm")[1], strict=True))
    diff = diffs["weighted_cross_entropy"]
    p = holm["weighted_cross_entropy"]
    p_text = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    sentence = (
        f"On sms_spam, weighted_cross_entropy raises rare-class recall by {diff.mean():.4f} ± {diff.std(ddof=1):.4f} "
        f"over cross_entropy (paired over 5 seeds, {p_text} after Holm): better."
    )
    assert sentence in headline
    assert "On sms_spam, dice lowers f1_macro ↑ by" in headline and "): worse." in headline

    # the task table: mean ± std and the 95% CI of the main metric, the verdicts, the extra metrics
    focal = ok[ok["loss_spec"] == "focal"]["test_f1_macro"]
    summary = stats.summarize(focal)
    section = report[report.index("## sms_spam") : report.index("## trec")]
    focal_row = next(line for line in section.splitlines() if line.startswith("| focal "))
    assert f"{focal.mean():.4f} ± {focal.std(ddof=1):.4f}" in focal_row
    assert f"[{summary.ci_low:.4f}, {summary.ci_high:.4f}]" in focal_row
    assert "| baseline " in report and "recall_rarest ↑" in report and "ece ↓" in report and "mae_rare ↓" in report
    assert " ▲" in report  # weighted_cross_entropy's recall_rarest cell

    # across tasks: ranks and Friedman over the 4 classification task sections; 1 regression task is said so
    assert "### classification: 4 tasks" in report and "Friedman test over 4 losses × 4 tasks" in report
    assert "Task sections built from the same data (trec)" in report
    assert "There is a single regression task (vader_movies)" in headline
    assert "Friedman test: not run; it needs at least 3 tasks, there is 1." in report

    # plots exist, are linked and are valid PNG files
    plots = tmp_path / "plots"
    stressed = file_stem("trec@noise=0.2")
    assert stressed == "trec_noise_0.2"
    expected = [
        f"{stem}_{kind}.png"
        for stem in ("rt_polarity", "sms_spam", "trec", stressed, "vader_movies")
        for kind in ("main_metric", "learning_curves")
    ]
    expected += [f"{stem}_reliability.png" for stem in ("rt_polarity", "sms_spam", "trec", stressed)]
    expected.append("critical_difference_classification.png")
    assert sorted(p.name for p in plots.glob("*.png")) == sorted(expected)
    for name in expected:
        _assert_png(plots / name)
        assert f"(plots/{name})" in report, name

    frame = pd.read_csv(tmp_path / STATS_FILE)
    row = frame[(frame["task"] == "sms_spam") & (frame["metric"] == "recall_rarest")].set_index("loss")
    assert row.at["weighted_cross_entropy", "p_holm"] == pytest.approx(p)
    assert row.at["weighted_cross_entropy", "verdict"] == stats.BETTER


def test_report_with_one_seed_says_no_tests(tmp_path):
    synthetic_results(tmp_path, seeds=1)
    report = write_report(tmp_path, plots=False).read_text()
    headline = _headline(report)
    assert "every loss has at most one finished seed, so there are no confidence intervals and no tests" in headline
    assert "With 1 seed (" in headline and "no test is possible" in headline
    assert "| n < 2 " in report and "better" not in headline and "worse" not in headline
    rows = [line for line in report.splitlines() if line.startswith("| focal ")]
    assert rows and all(" ± " not in line.split("|")[3] for line in rows)  # no std with one seed
    assert not (tmp_path / "plots").exists()


def test_report_with_failed_rows_and_missing_metric_columns(tmp_path):
    synthetic_results(tmp_path, seeds=3, failed=True, extra_metrics=False, files=False)
    report = write_report(tmp_path).read_text()
    assert "## Failed runs" in report and "boom in focal" in report and "loss became NaN" in report
    assert re.search(r"\| focal +\| 3 \(1 error\)", report)
    assert re.search(r"\| dice +\| 3 \(1 diverged\)", report)
    assert "2 run(s) did not finish (1 error, 1 diverged)" in _headline(report)
    tables = report[report.index("## rt_polarity") :]
    assert "recall_rarest" not in tables and "mae_rare" not in tables and "ece ↓" not in tables
    assert "learning curves: none (no per-run log history was found)" in report
    assert "reliability diagrams: none (no per-run test predictions were found)" in report
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} >= {"trec_main_metric.png"}


def test_a_loss_whose_every_run_failed_is_shown_not_averaged(tmp_path):
    runs = synthetic_results(tmp_path, seeds=2, files=False)
    runs.loc[runs["loss_spec"] == "focal", "status"] = "error"
    report = render_report(runs)
    assert re.search(r"\| focal +\| 0 \(2 error\) +\| – ", report)


def test_rows_without_loss_spec_use_the_loss_name(tmp_path):
    runs = synthetic_results(tmp_path, seeds=2, files=False)
    old = runs.drop(columns=["loss_spec"])
    assert render_report(old) == render_report(runs)


def test_report_without_baseline_runs(tmp_path):
    runs = synthetic_results(tmp_path, seeds=3, files=False)
    runs = runs[~((runs["task"] == "trec") & (runs["loss_spec"] == "cross_entropy"))]
    report = render_report(runs)
    assert "the baseline cross_entropy has no finished run here, so nothing is tested" in _headline(report)


def test_stale_plots_are_removed(tmp_path):
    synthetic_results(tmp_path, seeds=2, files=False)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "old_task_main_metric.png").write_bytes(PNG_SIGNATURE)
    write_report(tmp_path)
    assert not (tmp_path / "plots" / "old_task_main_metric.png").exists()


def test_the_docs_explain_the_report_columns():
    section = (DOCS / "report.md").read_text()
    for term in ("`n`", "`95% CI`", "`p (Holm)`", "`verdict`", "within noise", "Holm", "Friedman", "Nemenyi",
                 "`recall_rarest", "`ece", "`mae_rare", "`r2", "`train s`", "`peak MB`", "plots/"):  # fmt: skip
        assert term in section, term


def test_the_docs_page_and_every_report_share_one_how_to_read_text(tmp_path):
    page = (DOCS / "report.md").read_text()
    assert docs.with_report_guide(page) == page, "docs/report.md's how-to-read text is stale: run `make docs`"
    assert HOW_TO_READ in page
    synthetic_results(tmp_path, seeds=2, files=False)
    assert f"## How to read this report\n\n{HOW_TO_READ}\n" in write_report(tmp_path, plots=False).read_text()
    for name, metric in METRICS.items():  # the metric table of the text is the one in bench.metric_table
        if metric.problem_type:
            assert f"| `{name} {metric.arrow}` | {metric.problem_type} |" in HOW_TO_READ and metric.description in page


def test_the_baseline_is_the_one_the_rows_recorded(tmp_path):
    runs = synthetic_results(tmp_path, seeds=3, files=False)
    runs["baseline_loss"] = np.where(runs["task"] == "trec", "focal", None)  # trec declares focal; others: no column
    report = render_report(runs)
    trec = report[report.index("## trec\n") : report.index("## trec@noise=0.2\n")]
    assert "baseline **focal**" in trec and "| Δ vs focal " in trec
    assert re.search(r"\| focal +\| 3 .*\| baseline +\|", trec)
    sms = report[report.index("## sms_spam\n") : report.index("## trec\n")]
    assert "baseline **cross_entropy**" in sms  # rows without a recorded baseline: the problem type's default
    assert "baseline **mse**" in report[report.index("## vader_movies\n") :]
    frame = analyse(runs).statistics
    trec_focal = frame[(frame["task"] == "trec") & (frame["loss"] == "focal")]
    assert set(trec_focal["verdict"]) == {stats.BASELINE}


def test_the_analysis_holds_every_number_the_report_shows(tmp_path):
    runs = synthetic_results(tmp_path, seeds=3, failed=True, files=False)
    result = analyse(runs)
    assert result.protocol == FINE_TUNE and result.overview.failed == {"error": 1, "diverged": 1}
    assert (result.overview.finished, result.overview.skipped) == (int((runs["status"] == "ok").sum()), 1)
    trec = next(task for task in result.tasks if task.task == "trec")
    ok = runs[(runs["task"] == "trec") & (runs["status"] == "ok")]
    by_loss = ok.groupby("loss_spec")
    assert trec.costs["train_seconds"].to_dict() == pytest.approx(by_loss["train_seconds"].mean().to_dict())
    assert trec.failed == {"focal": {"error": 1}}
    assert trec.best["f1_macro"] == pytest.approx(by_loss["test_f1_macro"].mean().max())
    assert trec.baseline == "cross_entropy" and ("f1_macro", "dice") in trec.findings
    classification = next(item for item in result.across if item.problem_type == "classification")
    assert classification.order[0] == classification.best[0]
    assert classification.mean_ranks[classification.best[0]] == classification.best[1]


# --- a small run's report: bounded intervals, chance level, pooled ECE, learning curves ------------------------------

INTERVAL = re.compile(r"\[(-?\d+\.\d+), (-?\d+\.\d+)\]")


def _small_run(out) -> pd.DataFrame:
    """Two seeds, as in issue 12: a rare-class recall that is 0 on one seed and 0.97 on the other, and a loss whose
    accuracy is 0.50 / 0.52 on rt_polarity."""
    runs = synthetic_results(out, seeds=2)
    focal_sms = (runs["task"] == "sms_spam") & (runs["loss_spec"] == "focal") & (runs["status"] == "ok")
    runs.loc[focal_sms, "test_recall_rarest"] = [0.0, 0.9667]
    weak = (runs["task"] == "rt_polarity") & (runs["loss_spec"] == "weighted_cross_entropy")
    runs.loc[weak, "test_accuracy"] = [0.50, 0.52]
    runs.to_csv(out / "runs.csv", index=False)
    return runs


def _all_metrics_rows(report: str, task: str):
    """(metric, loss, cells) of a task's "All metrics" table."""
    section = report[report.index(f"## {task}\n") :]
    section = section[section.index("<details>") : section.index("</details>")]
    for line in [line for line in section.splitlines() if line.startswith("|")][2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        yield cells[0].split()[0], cells[1], cells


def test_small_run_intervals_stay_inside_each_metrics_range(tmp_path):
    _small_run(tmp_path)
    report = write_report(tmp_path, plots=False).read_text()
    checked = 0
    for task in ("rt_polarity", "sms_spam", "trec", "vader_movies"):
        for metric, loss, cells in _all_metrics_rows(report, task):
            low, high = METRIC_RANGE[metric]
            for interval in (cells[4], cells[6]):  # 95% CI of the mean, 95% CI of the paired difference
                match = INTERVAL.search(interval)
                if match:
                    a, b = float(match[1]), float(match[2])
                    width = high - low
                    bounds = (low, high) if interval is cells[4] else (-width, width)
                    assert bounds[0] <= a <= b <= bounds[1], (task, metric, loss, interval)
                    checked += 1
    assert checked > 100
    # the recall interval [-5.65, 6.63] is now [0, 1], marked as clipped, with a note under the table
    focal = next(cells for metric, loss, cells in _all_metrics_rows(report, "sms_spam")
                 if (metric, loss) == ("recall_rarest", "focal"))  # fmt: skip
    assert focal[4] == "[0.0000, 1.0000]†"
    section = report[report.index("## sms_spam\n") : report.index("## trec\n")]
    assert CLIPPED_NOTE in section and "clipped to the metric's range" in report


def test_small_run_report_states_the_chance_level_and_marks_losses_at_chance(tmp_path):
    runs = _small_run(tmp_path)
    report = write_report(tmp_path, plots=False).read_text()
    one_run = runs[(runs["task"] == "rt_polarity") & (runs["status"] == "ok")]["run_id"].iloc[0]
    labels = np.load(tmp_path / RUNS_DIR / one_run / PREDICTIONS_FILE)["labels"]
    majority = np.bincount(labels).max() / len(labels)  # the synthetic test labels are 200 random 0/1 labels
    section = report[report.index("## rt_polarity\n") : report.index("## sms_spam\n")]
    assert f"Chance level of accuracy: {majority:.4f}, always predicting the most common of the 200 test labels" in (
        section
    )
    assert "a uniform random guess scores 1/2 = 0.5000" in section
    weak = next(line for line in section.splitlines() if line.startswith("| weighted_cross_entropy "))
    assert "0.5100 ± 0.0141 ≈ chance" in weak
    strong = next(line for line in section.splitlines() if line.startswith("| focal "))
    assert "chance" not in strong
    assert f"On rt_polarity, 2 losses are within noise of chance level (accuracy {majority:.4f})" in _headline(report)
    vader = report[report.index("## vader_movies\n") :]
    assert "Chance level of pearson: 0, a prediction that ignores the input" in vader
    # without saved predictions a classification task's chance level is unknown, and said so
    assert "Chance level of f1_macro: unknown" in render_report(runs)


def _keep_tasks(out, runs: pd.DataFrame, tasks: tuple[str, ...]) -> pd.DataFrame:
    """Only these tasks' rows in runs.csv: fewer figures to draw."""
    runs = runs[runs["task"].isin(tasks)]
    runs.to_csv(out / "runs.csv", index=False)
    return runs


def test_report_says_what_the_reliability_diagrams_pool_and_shows_both_eces(tmp_path, monkeypatch):
    _keep_tasks(tmp_path, synthetic_results(tmp_path, seeds=3), ("trec",))
    drawn = {}
    original = plots_module.reliability_plot

    def recording(bins, pooled, mean_of_runs, title, path):
        drawn[title.split(":")[0]] = (pooled, mean_of_runs)
        return original(bins, pooled, mean_of_runs, title, path)

    monkeypatch.setattr(plots_module, "reliability_plot", recording)
    report = write_report(tmp_path).read_text()
    frame = pd.read_csv(tmp_path / STATS_FILE)
    ece = frame[(frame["task"] == "trec") & (frame["metric"] == "ece")].set_index("loss")["mean"]
    pooled, mean_of_runs = drawn["trec"]
    assert mean_of_runs == pytest.approx(ece.to_dict())  # the panels show the table's number beside the pooled one
    assert set(pooled) == set(mean_of_runs)
    section = report[report.index("## trec\n") :]
    link = section.index("[reliability diagrams](plots/trec_reliability.png)")
    note = section[link : link + 800]
    assert "**pooled ECE**" in note and "**mean of the runs' own ECEs**" in note and "`ece` column" in note
    how_to_read = report[report.index("## How to read this report") :]
    assert "The column is the mean of the runs' own ECEs" in how_to_read and "pool every" in how_to_read


def test_a_history_with_only_its_final_summary_is_reported_as_such(tmp_path):
    runs = _keep_tasks(tmp_path, synthetic_results(tmp_path, seeds=2), ("trec", "sms_spam"))
    final_only = [{"train_runtime": 1.0, "train_loss": 0.7, "epoch": 1.0, "step": 4}]
    for run_id in runs.loc[(runs["task"] == "trec") & (runs["status"] == "ok"), "run_id"]:
        (tmp_path / RUNS_DIR / run_id / LOG_HISTORY_FILE).write_text(json.dumps(final_only))
    report = write_report(tmp_path).read_text()
    section = report[report.index("## trec\n") :]
    assert f"learning curves: none ({ONLY_FINAL_HISTORY})" in section
    assert "no per-run log history was found" not in section
    assert "[learning curves](plots/sms_spam_learning_curves.png)" in report


@pytest.mark.parametrize(
    ("examples", "batch_size", "epochs", "expected"),
    [(64, 16, 1.0, 1), (450, 16, 1.0, 2), (450, 16, 5.0, 10), (24, 8, 1.0, 1), (3404, 16, 1.0, 10)],
)
def test_logging_steps_log_every_run_at_least_once(examples, batch_size, epochs, expected):
    assert logging_steps(examples, batch_size, epochs) == expected


def test_a_four_step_run_logs_its_training_loss_and_gets_learning_curves(tiny_model_dir, tmp_path):
    train = TrainConfig(model=str(tiny_model_dir), train_size=64, batch_size=16, max_length=32)
    runs, skipped = build_matrix(["trec"], ["cross_entropy"], [0], train)
    run_matrix(runs, skipped, tmp_path, quiet=True)
    history = json.loads((tmp_path / RUNS_DIR / runs[0].run_id / LOG_HISTORY_FILE).read_text())
    assert history[-1]["step"] == 4  # 64 examples / 16 per batch
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3, 4]
    report = write_report(tmp_path).read_text()
    assert "[learning curves](plots/trec_learning_curves.png)" in report
    _assert_png(tmp_path / "plots" / "trec_learning_curves.png")


# --- power: the minimum detectable difference in the analysis and the report -------------------------------------


def test_the_analysis_gives_each_task_the_minimum_detectable_difference_of_bench_power(tmp_path):
    runs = synthetic_results(tmp_path, seeds=4, files=False)
    result = analyse(runs)
    for task in result.tasks:
        ok = runs[(runs["task"] == task.task) & (runs["status"] == "ok")]
        values = ok.pivot(index="seed", columns="loss_spec", values=f"test_{task.main_metric}")
        diffs = values.drop(columns=task.baseline).sub(values[task.baseline], axis=0)
        pooled = float(np.sqrt((diffs.var(ddof=1) * 3).sum() / (3 * diffs.shape[1])))  # 4 seeds: 3 df per loss
        m = diffs.shape[1]
        assert (task.power.comparisons, task.power.seeds, task.power.pooled_losses) == (m, 4, m)
        assert task.power.pooled_std == pytest.approx(pooled)
        assert task.power.mdd == pytest.approx(power.minimum_detectable_difference(pooled, 4, comparisons=m))
        assert task.power.seeds_for_point == power.seeds_needed(pooled, 0.01, comparisons=m)
        per_loss = task.main.drop(index=task.baseline)
        for loss, row in per_loss.iterrows():
            expected = power.minimum_detectable_difference(diffs[loss].std(ddof=1), 4, comparisons=m)
            assert row["mdd"] == pytest.approx(expected)
    assert "mdd" in result.statistics.columns


def test_the_report_prints_each_tasks_minimum_detectable_difference(tmp_path):
    runs = synthetic_results(tmp_path, seeds=4, files=False)
    result = analyse(runs)
    report = render_report(runs)
    vader = next(task for task in result.tasks if task.task == "vader_movies")
    section = report[report.index("## vader_movies\n") :]
    mdd, needed = vader.power.mdd, vader.power.seeds_for_point
    assert (
        f"Power: differences in pearson smaller than **{mdd:.4f}** cannot be detected with 4 seeds at 80% power "
        "(paired t-test at α / m = 0.05 / 2, Holm's strictest step; the paired differences' std "
        f"{vader.power.pooled_std:.4f}, pooled over the 2 comparisons with mse). A difference of 0.01 would need "
        f"{needed} seeds." in section
    )
    # vader_movies' comparisons are all undecided: the headline says what its seeds could have detected
    assert vader.all_undecided
    assert (
        f"On vader_movies, no loss is told apart from mse on pearson: differences smaller than {mdd:.4f} cannot be "
        f"detected with 4 seeds at 80% power, and a difference of 0.01 would need {needed} seeds" in _headline(report)
    )
    trec = next(task for task in result.tasks if task.task == "trec")
    assert not trec.all_undecided and "On trec, no loss is told apart" not in _headline(report)
    one_seed = render_report(synthetic_results(tmp_path / "one", seeds=1, files=False))
    assert "Power: no loss was tested against cross_entropy" in one_seed


# --- checkpoint selection: the best validation checkpoint against the last weights ----------------------------------

SELECTION_GAPS = {"cross_entropy": 0.0, "focal": 0.02, "dice": 0.1, "weighted_cross_entropy": -0.01, "mae": 0.05}


def _with_selection(runs: pd.DataFrame, task: str, metric: str, higher: bool = True) -> pd.DataFrame:
    """``task``'s finished rows as --select-checkpoint writes them: test_last_<metric> below test_<metric> (above for a
    lower-is-better metric) by SELECTION_GAPS[loss] + 0.001 * seed, best_step 40 + seed of 60 planned steps
    (ceil(450 / 16) = 29 steps per epoch... 450 / 15 = 30, 2 epochs), 6 evaluations, seed 0 stopped early."""
    runs = runs.copy()
    ok = (runs["task"] == task) & (runs["status"] == "ok")
    gap = runs.loc[ok, "loss_spec"].map(SELECTION_GAPS).fillna(0.0) + 0.001 * runs.loc[ok, "seed"]
    runs.loc[ok, f"test_last_{metric}"] = runs.loc[ok, f"test_{metric}"] - (gap if higher else -gap)
    runs.loc[ok, "best_step"] = 40 + runs.loc[ok, "seed"]
    runs.loc[ok, "evaluations"] = 6
    runs.loc[ok, "stopped_early"] = runs.loc[ok, "seed"] == 0
    runs["batch_size"], runs["epochs"] = 15, 2.0
    return runs


def _expected_gap(loss: str, seeds: int) -> tuple[float, float, float]:
    """Mean and 95% t-interval of SELECTION_GAPS[loss] + 0.001 * seed over ``seeds`` seeds."""
    gaps = np.array([SELECTION_GAPS[loss] + 0.001 * seed for seed in range(seeds)])
    half = scipy_stats.t.ppf(0.975, seeds - 1) * gaps.std(ddof=1) / np.sqrt(seeds)
    return gaps.mean(), gaps.mean() - half, gaps.mean() + half


def test_the_selection_gap_of_runs_with_known_best_and_last_scores(tmp_path):
    runs = _with_selection(synthetic_results(tmp_path, seeds=4, files=False), "trec", "f1_macro")
    result = analyse(runs)
    trec = next(task for task in result.tasks if task.task == "trec")
    for loss in CLASSIFICATION_LOSSES:
        mean, low, high = _expected_gap(loss, 4)
        row = trec.main_selection.loc[loss]
        assert (row["n"], row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((4, mean, low, high))
    use = trec.checkpoints.loc["dice"]
    assert (use["runs"], use["best_step"], use["steps"], use["evaluations"], use["stopped_early"]) == (
        4, 41.5, 60, 6, 1
    )  # fmt: skip
    assert all(task.selection.empty and task.checkpoints.empty for task in result.tasks if task.task != "trec")

    report = render_report(runs)
    section = report[report.index("## trec\n") : report.index("## trec@noise=0.2\n")]
    mean, low, high = _expected_gap("dice", 4)
    assert re.search(r"\| best − last \(f1_macro ↑\) +\| 95% CI +\| best step / steps +\|", section)
    assert re.search(
        rf"\| dice +\| 4 +\| \+{mean:.4f} ± 0\.0013 +\| \[{low:.4f}, {high:.4f}\] +\| 41\.5 / 60 +\| 6 +\| 1/4 +\|",
        section,
    ), section
    assert "positive means the selected checkpoint scored better." in section
    assert report.count("| best − last (") == 1  # the other tasks' runs recorded no test_last_*: no table
    assert f"\n\n{SELECTION_GUIDE}\n" in report

    frame = result.statistics
    trec_dice = frame[(frame["task"] == "trec") & (frame["metric"] == "f1_macro") & (frame["loss"] == "dice")]
    assert trec_dice["best_minus_last_mean"].iloc[0] == pytest.approx(mean)
    assert trec_dice["best_minus_last_ci_high"].iloc[0] == pytest.approx(high)
    assert frame.loc[frame["task"] != "trec", "best_minus_last_mean"].isna().all()


def test_the_selection_gap_is_positive_when_selection_helped_a_lower_is_better_metric(tmp_path):
    runs = synthetic_results(tmp_path, seeds=3, files=False)
    runs.loc[runs["task"] == "vader_movies", "main_metric"] = "mse"  # lower is better
    runs = _with_selection(runs, "vader_movies", "mse", higher=False)  # last weights: a larger mse
    vader = next(task for task in analyse(runs).tasks if task.task == "vader_movies")
    mae = runs[(runs["task"] == "vader_movies") & (runs["loss_spec"] == "mae")]
    assert (mae["test_last_mse"] > mae["test_mse"]).all()  # the selected checkpoint's mse is the lower one
    assert vader.main_selection.loc["mae", "mean"] == pytest.approx(0.05 + 0.001)  # seeds 0, 1, 2: + 0.001 on average
    assert vader.main_selection.loc["mse", "mean"] == pytest.approx(0.001)
    section = render_report(runs)
    section = section[section.index("## vader_movies\n") :]
    assert re.search(r"\| best − last \(mse ↓\) +\|", section) and "(last − best: lower is better here)" in section


def test_runs_without_last_weights_scores_report_nothing_new(tmp_path):
    runs = synthetic_results(tmp_path, seeds=3, files=False)
    plain = render_report(runs)
    assert "best − last" not in plain and SELECTION_GUIDE not in plain
    assert not any(column.startswith("best_minus_last_") for column in analyse(runs).statistics.columns)
    # a test_last_ column with no value in it (rows of runs without --select-checkpoint beside others): the same report
    assert render_report(runs.assign(test_last_f1_macro=np.nan, best_step=np.nan, stopped_early="")) == plain
