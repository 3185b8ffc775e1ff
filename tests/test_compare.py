"""``lossbench compare A B`` on synthetic results folders (no training): the report's statistics, paired by seed
where both folders have the seeds, Welch's test otherwise, Holm within each task, and clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench import cli, stats
from bench.compare import PAIRED, WELCH, compare_folders, comparison_markdown
from bench.notebook import compare


def folder(path: Path, values: dict[tuple[str, str], dict[int, float]], *, model: str = "tiny") -> Path:
    """A results folder whose runs.csv holds one finished row per (task, loss, seed) with ``values`` as the task's
    main metric, plus a failed and a skipped row that must not count."""
    metric = {"trec": "f1_macro", "rt_polarity": "accuracy"}
    rows = []
    for (task, loss), by_seed in values.items():
        for seed, value in by_seed.items():
            rows.append(
                {
                    "run_id": hashlib.sha256(f"{path}-{task}-{loss}-{seed}".encode()).hexdigest()[:16],
                    "status": "ok",
                    "task": task,
                    "task_version": "1.0",
                    "problem_type": "classification",
                    "main_metric": metric[task],
                    "loss": loss.split(":")[0],
                    "loss_spec": loss,
                    "seed": seed,
                    "model": model,
                    f"test_{metric[task]}": value,
                }
            )
    rows.append({**rows[0], "run_id": "f" * 16, "status": "error", "seed": 99, f"test_{metric[rows[0]['task']]}": 0.0})
    rows.append({**rows[0], "run_id": "skip-" + "e" * 16, "status": "skipped", "loss_spec": "mse", "loss": "mse"})
    path.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path / "runs.csv", index=False)
    return path


A_TREC = {"cross_entropy": [0.60, 0.64, 0.70], "focal": [0.61, 0.66, 0.69]}
B_TREC = {"cross_entropy": [0.63, 0.66, 0.74], "focal": [0.60, 0.67, 0.69]}


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    a = {("trec", loss): dict(enumerate(values)) for loss, values in A_TREC.items()}
    a[("rt_polarity", "cross_entropy")] = {0: 0.70, 1: 0.72, 2: 0.71}
    a[("trec", "gce")] = {0: 0.5}  # only in A
    b = {("trec", loss): dict(enumerate(values)) for loss, values in B_TREC.items()}
    b[("rt_polarity", "cross_entropy")] = {5: 0.75, 6: 0.77, 7: 0.74, 8: 0.76}  # other seeds: Welch
    return folder(tmp_path / "a", a), folder(tmp_path / "b", b, model="other")


def test_paired_where_seeds_are_shared_welch_otherwise_holm_within_each_task(folders):
    comparison = compare_folders(*folders)
    table = comparison.table.set_index(["task", "loss"])
    assert list(table.index) == [("rt_polarity", "cross_entropy"), ("trec", "cross_entropy"), ("trec", "focal")]
    trec_p = []
    for loss in ("cross_entropy", "focal"):
        row = table.loc[("trec", loss)]
        expected = scipy_stats.ttest_rel(B_TREC[loss], A_TREC[loss])
        assert row["test"] == PAIRED and row["n_pairs"] == 3 and row["a_n"] == 3  # the error row is left out
        assert row["p"] == pytest.approx(expected.pvalue)
        assert row["diff_mean"] == pytest.approx(np.mean(B_TREC[loss]) - np.mean(A_TREC[loss]))
        assert row["a_mean"] == pytest.approx(np.mean(A_TREC[loss])) and row["metric"] == "f1_macro"
        trec_p.append(expected.pvalue)
    assert list(table.loc[("trec", slice(None)), "p_holm"]) == pytest.approx(list(stats.holm(trec_p)))
    rt = table.loc[("rt_polarity", "cross_entropy")]
    welch = scipy_stats.ttest_ind([0.75, 0.77, 0.74, 0.76], [0.70, 0.72, 0.71], equal_var=False)
    assert rt["test"] == WELCH and rt["n_pairs"] == 0 and (rt["a_n"], rt["b_n"]) == (3, 4)
    assert rt["p"] == pytest.approx(welch.pvalue) and rt["p_holm"] == pytest.approx(welch.pvalue)  # alone in its task
    low, high = welch.confidence_interval(0.95)
    assert (rt["diff_ci_low"], rt["diff_ci_high"]) == pytest.approx((low, high))
    assert rt["verdict"] == stats.BETTER  # p < 0.05 and the difference above A's seed std
    assert comparison.only_a == [("trec", "gce")] and comparison.only_b == []
    assert comparison.settings == {"model": ("tiny", "other")}


def test_the_verdict_is_the_reports_rule(tmp_path):
    """Significant but smaller than A's seed std: within noise, as in the report."""
    a = folder(tmp_path / "a", {("trec", "cross_entropy"): {0: 0.5, 1: 0.7, 2: 0.9}})
    b = folder(tmp_path / "b", {("trec", "cross_entropy"): {0: 0.51, 1: 0.71, 2: 0.911}})
    row = compare_folders(a, b).table.iloc[0]
    assert row["p"] < 0.05 and row["verdict"] == stats.NOISE


def test_the_markdown_table_and_the_out_file(folders, tmp_path, capsys):
    out = tmp_path / "comparison.md"
    assert cli.main(["compare", str(folders[0]), str(folders[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert text in printed
    assert "| task " in text and "| trec " in text and "f1_macro ↑" in text and "paired t (3 pairs)" in text
    assert "Welch t" in text and "- `model` differs: A tiny, B other" in text and "Only in A: trec: gce." in text
    assert comparison_markdown(compare_folders(*folders)) == text


def test_a_folder_without_runs_and_folders_with_nothing_in_common_are_refused(folders, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["compare", str(folders[0]), str(empty)]) == 2
    assert f"B {empty}: it holds no runs.csv" in capsys.readouterr().err
    assert cli.main(["compare", str(tmp_path / "nowhere"), str(folders[1])]) == 2
    assert "no such folder" in capsys.readouterr().err
    other = folder(tmp_path / "c", {("trec", "dice"): {0: 0.4}})
    assert cli.main(["compare", str(folders[0]), str(other)]) == 2
    error = capsys.readouterr().err
    assert "no (task, loss) with finished runs in common" in error
    assert "A has rt_polarity: cross_entropy; trec: cross_entropy, focal, gce. B has trec: dice." in error


def test_the_python_api_returns_the_table(folders):
    assert compare(*folders).equals(compare_folders(*folders).table)


def test_welch_difference_matches_scipy_and_handles_small_and_constant_samples():
    result = stats.welch_difference([0.8, 0.82, 0.79], [0.7, 0.75, 0.72, 0.71], bounds=(0.0, 1.0))
    expected = scipy_stats.ttest_ind([0.8, 0.82, 0.79], [0.7, 0.75, 0.72, 0.71], equal_var=False)
    assert (result.n, result.n_baseline) == (3, 4)
    assert result.p == pytest.approx(expected.pvalue) and result.statistic == pytest.approx(expected.statistic)
    assert np.isnan(stats.welch_difference([0.5], [0.4, 0.6]).p)
    assert stats.welch_difference([0.5, 0.5], [0.5, 0.5]).p == 1.0
