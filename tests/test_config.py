"""The run settings: validation, the precision setting, and what goes into a run's identity."""

from __future__ import annotations

import math

import pytest

from bench.config import RunSpec, TrainConfig
from bench.environment import bf16_supported


def test_precision_auto_resolves_to_what_the_hardware_runs_natively():
    assert TrainConfig().precision == ("bf16" if bf16_supported() else "fp32")
    assert TrainConfig(precision="fp32").precision == "fp32"
    assert TrainConfig(precision="bf16").precision == "bf16"


def test_bad_precision_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"precision='fp16'.*auto, bf16, fp32"):
        TrainConfig(precision="fp16")


def test_precision_is_part_of_the_run_identity():
    def run_id(precision: str) -> str:
        return RunSpec("trec", "1.0", "cross_entropy", 0, TrainConfig(precision=precision)).run_id

    assert run_id("bf16") != run_id("fp32")
    assert run_id("auto") == run_id("bf16" if bf16_supported() else "fp32")


@pytest.mark.parametrize(
    ("field", "value"), [("train_size", 0), ("epochs", 0), ("learning_rate", -1.0), ("warmup_ratio", 1.0)]
)
def test_out_of_range_settings_name_the_field(field: str, value: float):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("train_size", 0, "an integer >= 1, or None for all"),
        ("epochs", math.inf, "a finite number > 0"),
        ("learning_rate", 0.0, "a finite number > 0"),
        ("batch_size", 0, "an integer >= 1"),
        ("max_length", 4, "an integer >= 8"),
        ("weight_decay", -0.1, "a finite number >= 0"),
        ("warmup_ratio", 1.0, r"a number in \[0, 1\)"),
    ],
)
def test_out_of_range_settings_name_the_valid_range(field: str, value: float, valid: str):
    with pytest.raises(ValueError, match=f"Invalid {field}={value!r}: must be {valid}"):
        TrainConfig(precision="fp32", **{field: value})
