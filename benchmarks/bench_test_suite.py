"""The default test run, timed: `python -m pytest -q` (what `bash scripts/test.sh` runs once .venv exists) on this
tree and on a baseline git ref, in the same session, each ``--runs`` times, with wall time, CPU time (user + system
of pytest and every process it started) and the test count, and the ratio of each to the baseline.

    python benchmarks/bench_test_suite.py --baseline e802fa5 --runs 1 --out benchmarks/results/test_suite_cpu.md

The baseline is checked out in a temporary git worktree and run with this checkout's .venv (the dependencies must
be the same); its tests find Caltech-101 through ALEXNET_DATA. Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from training.config import default_data_root  # noqa: E402


@dataclass
class Run:
    tree: str
    wall_s: float
    cpu_s: float
    passed: int
    failed: int
    skipped: int
    not_passed: list[str]  # pytest's -ra lines: which failed or were skipped, and why


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_suite(tree: Path, label: str, python: str) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALEXNET_", "PYTEST_"))}
    env["ALEXNET_DATA"] = default_data_root()
    cpu, started = children_cpu(), time.monotonic()
    done = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tree, env=env, capture_output=True, text=True
    )
    wall, cpu = time.monotonic() - started, children_cpu() - cpu
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error|skipped)", summary)}
    print(f"{label}: {summary} ({wall:.0f} s wall, {cpu:.0f} s CPU)", flush=True)
    not_passed = [line[:200] for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR", "SKIPPED"))]
    failed = counts.get("failed", 0) + counts.get("error", 0)
    return Run(label, wall, cpu, counts.get("passed", 0), failed, counts.get("skipped", 0), not_passed)


def cpu_name() -> str:
    """The first CPU's model name, family and model, and its widest vector units (from /proc/cpuinfo)."""
    info: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    flags = set(info.get("flags", "").split())
    units = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if name in flags]
    name = info.get("model name", platform.processor())
    family, model = info.get("cpu family", "?"), info.get("model", "?")
    return f"{name} (family {family} model {model}; {', '.join(units) or 'no AVX2'})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="", help="git ref to compare with (none: this tree only)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each tree")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args()
    python = str(REPO / ".venv" / "bin" / "python")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            base = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=REPO, check=True)
            try:
                runs += [run_suite(base, f"baseline {args.baseline}", python) for _ in range(args.runs)]
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=True)
        runs += [run_suite(REPO, f"this tree ({head.stdout.strip()})", python) for _ in range(args.runs)]
    reference = runs[0]
    lines = [
        f"# The default test run (`python -m pytest -q`), {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; `python benchmarks/bench_test_suite.py"
        f"{' --baseline ' + args.baseline if args.baseline else ''} --runs {args.runs}`. Ratios: each run over the"
        " first row.",
        "",
        "| tree | passed | failed | skipped | wall (s) | CPU (s) | wall ratio | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.tree} | {run.passed} | {run.failed} | {run.skipped} | {run.wall_s:.0f} | {run.cpu_s:.0f} | "
            f"{run.wall_s / reference.wall_s:.2f} | {run.cpu_s / reference.cpu_s:.2f} |"
        )
    for run in runs:
        if run.not_passed:
            lines += ["", f"Not passed in {run.tree}:", "", *(f"- `{line}`" for line in run.not_passed)]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0 if all(run.failed == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
