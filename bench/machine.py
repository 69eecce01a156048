"""Machine facts and measurements: fp32 matmul peak, resident-set-size (RSS) peaks, a description."""

from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import time

import torch


def _status_kib(field: str) -> int | None:
    try:
        text = open("/proc/self/status").read()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


def rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the last reset (or since start), in bytes."""
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if platform.system() == "Darwin" else r * 1024
    return kib * 1024


class PeakRSS:
    """with PeakRSS() as p: ...  -> p.peak (bytes, absolute) and p.before (RSS at entry)."""

    def __enter__(self):
        self.before = rss_bytes()
        self.exact = reset_peak_rss()
        return self

    def __exit__(self, *exc):
        self.peak = peak_rss_bytes()
        return False


def matmul_peak(n: int = 2048, repeats: int = 8, dtype=torch.float32) -> float:
    """Best achieved FLOP/s of an n x n x n matmul on this machine (after one warm-up)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    except OSError:
        pass
    return []


def total_memory_bytes() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def describe() -> dict:
    return {
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "memory_gb": round(total_memory_bytes() / 2 ** 30, 1),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def median(values) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------- contention
# The machine may be shared: every timed interval also records how much CPU *other* processes used
# meanwhile (system busy time from /proc/stat minus this process's own CPU time), so that intervals
# disturbed by others can be told apart from clean ones.
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CLEAN_FOREIGN_SHARE = 0.15  # an interval is "clean" when others used < 15 % of the machine meanwhile


def _system_busy_ticks() -> int | None:
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(vals) - vals[3] - vals[4]  # minus idle and iowait


def _self_ticks() -> int | None:
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        return None


def stamp() -> tuple:
    """(wall seconds, system busy ticks, own CPU ticks) for contention-aware interval timing."""
    return time.perf_counter(), _system_busy_ticks(), _self_ticks()


MIN_RESOLVED_S = 0.25  # shorter intervals are too short for 10 ms CPU ticks: judged by their whole run


def intervals(stamps: list) -> list[dict]:
    """Consecutive stamps -> [{'s': seconds, 'foreign_s': CPU seconds other processes used meanwhile}]."""
    out = []
    for (t0, b0, s0), (t1, b1, s1) in zip(stamps, stamps[1:]):
        foreign = None
        if None not in (b0, b1, s0, s1):
            foreign = max(0.0, ((b1 - b0) - (s1 - s0)) / _HZ)
        out.append({"s": t1 - t0, "foreign_s": foreign})
    return out


def _shares(samples: list[dict]) -> list:
    """Share of the machine used by other processes during each interval (None if unknown)."""
    ncpu = os.cpu_count() or 1
    known = [x for x in samples if x.get("foreign_s") is not None]
    total_s = sum(x["s"] for x in known)
    # the whole run too short to resolve (a few 10 ms ticks): no verdict, counted as clean
    overall = sum(x["foreign_s"] for x in known) / (ncpu * total_s) if total_s >= MIN_RESOLVED_S else None
    shares = []
    for x in samples:
        if x.get("foreign_s") is None:
            shares.append(None)
        elif x["s"] >= MIN_RESOLVED_S:
            shares.append(x["foreign_s"] / (ncpu * x["s"]))
        else:
            shares.append(overall)
    return shares


def robust_time(samples: list[dict]) -> dict:
    """Median over clean intervals when there are at least two, else over all (flagged as contended).

    Intervals whose contention cannot be resolved (no /proc, or a run shorter than MIN_RESOLVED_S)
    count as clean.
    """
    shares = _shares(samples)
    every = [x["s"] for x in samples]
    clean = [x["s"] for x, sh in zip(samples, shares) if sh is None or sh < CLEAN_FOREIGN_SHARE]
    use_clean = len(clean) >= 2 or (len(clean) >= 1 and len(every) <= 2)
    chosen = clean if use_clean else every
    return {"median_s": median(chosen), "min_s": min(every) if every else float("nan"),
            "all_median_s": median(every), "clean": len(clean), "n": len(every), "contended": not use_clean,
            "foreign_share": [None if sh is None else round(sh, 3) for sh in shares]}
