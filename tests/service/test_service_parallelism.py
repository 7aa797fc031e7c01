"""service/parallelism.py: how many batches run at once and with how many threads each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.parallelism import Parallelism, available_cpus, plan_parallelism
from service.settings import Settings


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", None),  # no quota: the affinity mask
        ("100000 100000\n", 1),
        ("150000 100000\n", 2),  # 1.5 CPUs: two threads may each use part of a core
        ("1000 100000\n", 1),  # never below one
        ("garbled\n", None),
        ("abc 100000\n", None),
    ],
)
def test_available_cpus_follow_the_cgroup_quota(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    affinity = len(os.sched_getaffinity(0))
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    assert available_cpus(path) == (affinity if expected is None else min(expected, affinity))
    assert available_cpus(tmp_path / "missing") == affinity


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("values", "onnxruntime_cpu", "expected"),
    [
        ({}, True, Parallelism(workers=1, threads=8)),  # the default: one run at a time on every CPU
        ({"inference_workers": 2}, True, Parallelism(2, 4)),  # an equal share each
        ({"inference_workers": 3}, True, Parallelism(3, 2)),
        ({"inference_workers": 16}, True, Parallelism(16, 1)),  # never below one thread
        ({"inference_workers": 2, "intra_op_threads": 3}, True, Parallelism(2, 3)),  # as set
        ({}, False, Parallelism(1, 0)),  # CUDA, OpenVINO: their own threads
        ({"inference_workers": 2, "intra_op_threads": 4}, False, Parallelism(2, 4)),
    ],
)
def test_plan_resolves_a_zero_thread_count(values: dict, onnxruntime_cpu: bool, expected: Parallelism) -> None:
    assert plan_parallelism(settings(**values), onnxruntime_cpu, cpus=8) == expected
