"""The benchmark script's arithmetic (its timings belong to `make perf`, never to a test)."""

from __future__ import annotations

from transformers import BertForSequenceClassification

from bench import perf
from bench.perf import matrix_rows, spread, table, training_flops, where_time_goes
from bench.results import ResultsStore
from tests.helpers import tiny_bert_config


def test_training_flops_counts_six_per_encoder_parameter_and_token_plus_attention():
    model = BertForSequenceClassification(tiny_bert_config())
    encoder = sum(p.numel() for p in model.bert.encoder.parameters())
    embeddings = sum(p.numel() for p in model.bert.embeddings.parameters())
    lengths = [5, 12]
    attention = 12 * 2 * 16 * (5**2 + 12**2)  # 12 x layers x hidden x sum L^2
    assert training_flops(model, lengths, epochs=1) == 6 * encoder * 17 + attention
    assert training_flops(model, lengths, epochs=2) == 2 * training_flops(model, lengths, epochs=1)
    assert encoder + embeddings < sum(p.numel() for p in model.parameters())  # the pooler and head are left out


def test_spread_is_the_median_with_its_range():
    assert spread([3.0, 1.0, 2.0]) == "2.00 s (1.00-3.00, n=3)"


def test_table_is_markdown():
    assert table(("a", "b"), [("1", "2")]) == "| a | b |\n|---|---|\n| 1 | 2 |"


def test_matrix_rows_read_the_recorded_invocations(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    assert "not recorded" in matrix_rows(tmp_path, live=False)[0][1]
    base = {"git_commit": "abc", "workers": 1}
    store.log_invocation({**base, "runs": 144, "to_run": 144, "finished": 144, "process_seconds": 900.0})
    timed = []
    monkeypatch.setattr(perf, "timed_command", lambda args: timed.append(args) or 6.5)
    (first, rerun) = matrix_rows(tmp_path, live=False)
    assert first[1] == "15.0 min" and rerun[1] == "6.5 s"
    assert timed[0][:2] == ["run", "--out"] and timed[0][2] != str(tmp_path)  # the rerun runs on a copy


def test_where_time_goes_uses_finished_fine_tunes_only(tmp_path):
    store = ResultsStore(tmp_path)
    row = {"task": "trec", "task_version": "1.1", "problem_type": "classification", "main_metric": "f1_macro",
           "loss": "focal", "seed": 0, "test_f1_macro": 0.5, "test_examples": 808, "protocol": "fine-tune"}  # fmt: skip
    for run_id, seconds, status in (("a" * 16, 4.0, "ok"), ("b" * 16, 6.0, "ok"), ("c" * 16, 99.0, "error")):
        store.put({**row, "run_id": run_id, "status": status, "train_seconds": seconds, "eval_seconds": 1.0,
                   "wall_seconds": seconds + 2})  # fmt: skip
    ((task, runs, train, evaluation, wall),) = where_time_goes(tmp_path)
    assert (task, runs, train, wall) == ("trec", "2", "5.00 s", "7.00 s") and "808 examples" in evaluation
