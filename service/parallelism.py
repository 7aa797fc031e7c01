"""How inference uses the CPUs: how many batches run at once, and how many threads each run uses.

``inference_workers`` batches run at once (1 by default). On ONNX Runtime's CPU provider each run
gets an equal share of the cores this process may use: the physical cores of its affinity mask,
capped by its cgroup CPU quota. ONNX Runtime's own default counts every physical core of the
host, which oversubscribes a container limited to a few of them. CUDA and OpenVINO choose their
own threads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CPU_TOPOLOGY = Path("/sys/devices/system/cpu")


def physical_cores(cpus: set[int], topology: Path = CPU_TOPOLOGY) -> int:
    """Distinct physical cores among the logical ``cpus`` (hyperthread siblings count once, as in
    ONNX Runtime's own default); the logical count where the topology cannot be read."""
    try:
        cores = {
            ((topology / f"cpu{cpu}/topology/physical_package_id").read_text().strip(),
             (topology / f"cpu{cpu}/topology/core_id").read_text().strip())
            for cpu in cpus
        }  # fmt: skip
    except OSError:
        return len(cpus)
    return len(cores) or len(cpus)


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX, topology: Path = CPU_TOPOLOGY) -> int:
    """Cores this process may compute on: the physical cores of its affinity mask, capped by a
    cgroup v2 CPU quota (a container's ``--cpus``) when there is one."""
    cpus = physical_cores(os.sched_getaffinity(0), topology)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota == "max":
            return cpus
        return max(1, min(cpus, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError, ZeroDivisionError):
        return cpus


@dataclass(frozen=True)
class Parallelism:
    workers: int  # batches run at once, each on its own thread
    threads: int  # the runtime's threads per run; 0: the runtime chooses


def plan_parallelism(settings: Settings, onnxruntime_cpu: bool, cpus: int | None = None) -> Parallelism:
    """The settings' ``inference_workers`` and ``intra_op_threads``, a zero thread count resolved.
    ``onnxruntime_cpu``: the model runs on ONNX Runtime's CPU provider."""
    workers, threads = settings.inference_workers, settings.intra_op_threads
    if onnxruntime_cpu and not threads:
        threads = max(1, (cpus or available_cpus()) // workers)
    return Parallelism(workers, threads)
