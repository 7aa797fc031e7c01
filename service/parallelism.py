"""How inference uses the CPUs: how many batches run at once, how many threads each run uses, and
how many threads decode uploads.

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
CORES_PER_DECODE_THREAD = 8  # beside a model computing on the CPU
DECODE_THREADS_BESIDE_GPU = 4  # enough on the H100 machine: 2.5 of its 16 cores busy (docs/performance.md, 2)


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


def plan_decode_threads(settings: Settings, model_on_cpu: bool, cpus: int | None = None) -> int:
    """The settings' ``decode_threads``, 0 resolved. Beside a model that computes on the CPU (ONNX
    Runtime's CPU provider, OpenVINO): one per 8 usable cores, at least one. Decoding a centre crop
    takes about a tenth of the model's CPU, and each decode thread running beside the model preempts
    one of its threads, which stalls the others at the next barrier; one decode thread against four
    on a 2-CPU machine is measured in docs/performance.md, section 4 ("One decode thread per 8
    cores"). Beside a GPU the CPU only decodes and serves HTTP: 4."""
    if settings.decode_threads:
        return settings.decode_threads
    if not model_on_cpu:
        return DECODE_THREADS_BESIDE_GPU
    return max(1, (cpus or available_cpus()) // CORES_PER_DECODE_THREAD)
