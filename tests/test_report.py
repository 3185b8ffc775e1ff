"""The report from a synthetic results folder: 1 and 5 seeds, failed rows, missing metric columns, plots."""

from __future__ import annotations

import json
import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from bench import stats
from bench.docs import README
from bench.plots import file_stem
from bench.report import STATS_FILE, render_report, write_report
from bench.results import LOG_HISTORY_FILE, PREDICTIONS_FILE, RUNS_DIR

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSIFICATION = {"rt_polarity": "accuracy", "sms_spam": "f1_macro", "trec": "f1_macro", "trec@noise=0.2": "f1_macro"}
CLASSIFICATION_LOSSES = ("cross_entropy", "focal", "dice", "weighted_cross_entropy")
REGRESSION_LOSSES = ("mse", "mae", "huber")
# weighted_cross_entropy raises the rarest class's recall by 0.2 on every classification task; dice is far worse.
EFFECTS = {"focal": 0.005, "dice": -0.3, "weighted_cross_entropy": 0.0, "mae": -0.01, "huber": 0.0}


def _row(task: str, loss: str, seed: int, rng: np.random.Generator, extra_metrics: bool) -> dict:
    classification = task in CLASSIFICATION
    row = {
        "run_id": f"{task}-{loss}-{seed}".replace("@", "_").replace("=", "_"),
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
        {"run_id": "skip-1", "status": "skipped", "task": "trec", "problem_type": "classification",
         "main_metric": "f1_macro", "loss": "mse", "loss_spec": "mse", "message": "mse supports regression"}
    )  # fmt: skip
    if failed:
        rows += [
            {**_row("trec", "focal", seeds, rng, extra_metrics), "run_id": "err-1", "status": "error",
             "error_type": "RuntimeError", "message": "boom in focal"},
            {"run_id": "div-1", "status": "diverged", "task": "sms_spam", "problem_type": "classification",
             "main_metric": "f1_macro", "loss": "dice", "loss_spec": "dice", "seed": seeds,
             "error_type": "FloatingPointError", "message": "loss became NaN at step 12"},
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


def test_readme_explains_the_report_columns():
    text = README.read_text()
    section = text[text.index("### How to read the report") :]
    section = section[: section.index("\n## ")]
    for term in ("`n`", "`95% CI`", "`p (Holm)`", "`verdict`", "within noise", "Holm", "Friedman", "Nemenyi",
                 "`recall_rarest", "`ece", "`mae_rare", "`r2", "`train s`", "`peak MB`", "plots/"):  # fmt: skip
        assert term in section, term
