"""What makes a run reproducible beyond its config: library versions, git commit, hardware, peak memory."""

from __future__ import annotations

import os
import platform
import subprocess
import threading
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil
import torch

LIBRARIES = ("torch", "transformers", "datasets", "evaluate", "accelerate", "scikit-learn")
# A row's environment columns (``run_environment``): the Python and library versions, then where the run ran.
VERSION_COLUMNS = ("python_version", *(f"{name.replace('-', '_')}_version" for name in LIBRARIES))
ENVIRONMENT_COLUMNS = (*VERSION_COLUMNS, "git_commit", "hardware", "torch_threads")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Set by the Ray executor on its workers, which run the driver's code without the driver's git folder.
GIT_COMMIT_ENV = "LOSSBENCH_GIT_COMMIT"


@cache
def library_versions() -> dict[str, str]:
    """Python's version and each of ``LIBRARIES``' (``not installed`` when absent), keyed by ``VERSION_COLUMNS``."""
    versions = [platform.python_version()]
    for name in LIBRARIES:
        try:
            versions.append(version(name))
        except PackageNotFoundError:
            versions.append("not installed")
    return dict(zip(VERSION_COLUMNS, versions, strict=True))


def run_environment() -> dict[str, str | int]:
    """The ``ENVIRONMENT_COLUMNS`` of a row: library versions, the code's commit, the hardware and torch threads."""
    environment = {**library_versions(), "git_commit": git_commit(), "hardware": hardware()}
    return {**environment, "torch_threads": torch.get_num_threads()}


@cache
def git_commit() -> str:
    """HEAD of the lossbench checkout, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git.

    Read once per process, when the first run starts; ``LOSSBENCH_GIT_COMMIT``, when set, is the answer.
    """
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@cache
def hardware() -> str:
    """CPU model, core count and torch threads; the GPU when one is used."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    description = f"{cpu}, {psutil.cpu_count(logical=True)} cores, {torch.get_num_threads()} torch threads"
    if torch.cuda.is_available():
        description += f", GPU {torch.cuda.get_device_name(0)}"
    return description


def bf16_supported() -> bool:
    """Whether bfloat16 autocast runs natively here: a CUDA GPU with bf16, or a CPU with AMX or AVX512-BF16.

    Elsewhere bf16 is emulated and slower than fp32.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


class PeakMemory:
    """Peak resident memory of this process (MB) while the ``with`` block runs, sampled every ``interval`` s.

    On a GPU it also records ``torch.cuda.max_memory_allocated``.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.peak_gpu_mb: float | None = None
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_rss_mb = max(self.peak_rss_mb, self._process.memory_info().rss / 2**20)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if torch.cuda.is_available():
            self.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
