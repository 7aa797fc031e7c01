"""service/parallelism.py: how many batches run at once and with how many threads each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.parallelism import (
    Parallelism,
    available_cpus,
    physical_cores,
    plan_decode_threads,
    plan_parallelism,
)
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
    cores = physical_cores(os.sched_getaffinity(0))
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    assert available_cpus(path) == (cores if expected is None else min(expected, cores))
    assert available_cpus(tmp_path / "missing") == cores


def test_hyperthread_siblings_count_once(tmp_path: Path) -> None:
    # 4 logical CPUs: two cores with two threads each, on one package
    for cpu, core in enumerate([0, 0, 1, 1]):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert physical_cores({0, 2}, tmp_path) == 2 and physical_cores({0, 1}, tmp_path) == 1
    assert physical_cores({0, 1, 7}, tmp_path) == 3  # cpu7 unreadable: the logical count


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


@pytest.mark.parametrize(
    ("values", "model_on_cpu", "cpus", "expected"),
    [
        ({}, True, 2, 1),  # the development machine: one thread decodes beside the model
        ({}, True, 15, 1),
        ({}, True, 16, 2),  # one per 8 cores
        ({}, True, 64, 8),
        ({}, False, 2, 4),  # beside a GPU the CPU only decodes and serves HTTP
        ({"decode_threads": 3}, True, 2, 3),  # as set
        ({"decode_threads": 3}, False, 64, 3),
    ],
)
def test_decode_threads_resolve_from_the_cores_beside_the_model(
    values: dict, model_on_cpu: bool, cpus: int, expected: int
) -> None:
    assert plan_decode_threads(settings(**values), model_on_cpu, cpus=cpus) == expected
