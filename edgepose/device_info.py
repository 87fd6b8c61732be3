"""Facts about the machine a benchmark ran on: CPU, cores, memory, library versions, and the clock
and thermal state (frequency, temperature, throttling) that explain a slow run on a Pi or a Jetson.

Everything is read from files the kernel exposes (``/proc``, ``/sys``) or from ``vcgencmd`` on a
Raspberry Pi; whatever a machine does not expose is reported as ``"not exposed"``, never an error.
"""

from __future__ import annotations

import math
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from .memory import allocator_state

NOT_EXPOSED = "not exposed"

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation).
THROTTLE_FLAGS = {
    0: "under-voltage now",
    1: "arm frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "arm frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip().strip("\x00")
    except OSError:
        return None


def _cpuinfo() -> list[tuple[str, str]]:
    text = _read("/proc/cpuinfo") or ""
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines()) if v]


def cpu_model() -> str:
    """The CPU's marketing name; on ARM boards, the board's model (``/proc/device-tree/model``)."""
    fields = _cpuinfo()
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for k, v in fields:
            if k == key:
                return v
    return platform.processor() or platform.machine()


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions by distribution name, without importing them (importing openvino costs time)."""
    from importlib import metadata  # here, not at the top: 15 ms of every runtime process's cold start

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def onnxruntime_distribution() -> str:
    """onnxruntime's version, naming the wheel when it is a special build (its name says which
    execution providers it can have: onnxruntime-gpu, onnxruntime-openvino, ...)."""
    from importlib import metadata

    for name in ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime"):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return version if name == "onnxruntime" else f"{version} ({name})"
    return "not installed"


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask (taskset, cpusets), capped by a cgroup CPU
    quota rounded up (``docker --cpus=2`` sets a quota, not affinity, on a host of any size)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def cpu_quota() -> float | None:
    """Cores' worth of CPU time the cgroup allows (cgroup v2 ``cpu.max``, v1 ``cfs_quota_us``), None if unlimited."""
    v2 = (_read("/sys/fs/cgroup/cpu.max") or "").split()
    pairs = [v2] if len(v2) == 2 else []
    v1 = [_read(f"/sys/fs/cgroup/cpu/cpu.cfs_{name}_us") for name in ("quota", "period")]
    pairs.append(v1)
    for quota, period in pairs:
        if quota and period and quota.lstrip("-").isdigit() and period.isdigit() and int(quota) > 0 < int(period):
            return int(quota) / int(period)
    return None


def system_info() -> dict[str, Any]:
    """The machine, once per report."""
    import cv2
    import numpy as np

    from . import __version__

    mem_kb = re.search(r"MemTotal:\s+(\d+)", _read("/proc/meminfo") or "")
    return {
        "cpu": cpu_model(),
        "board": _read("/proc/device-tree/model") or NOT_EXPOSED,
        "machine": platform.machine(),
        "os": platform.platform(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable_cores(),
        "allocator": allocator_state(),
        "memory_mb": round(int(mem_kb.group(1)) / 1024) if mem_kb else NOT_EXPOSED,
        "python": platform.python_version(),
        "libraries": {
            "edgepose": __version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "onnxruntime": onnxruntime_distribution(),
            **library_versions("openvino"),
        },
    }


def cpu_frequencies_mhz() -> dict[str, Any]:
    """Current clock per core: cpufreq where the kernel has it, else /proc/cpuinfo's 'cpu MHz' (x86)."""
    cores = sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"),
                   key=lambda p: int(p.parent.parent.name[3:]))  # cpu2 before cpu10  # fmt: skip
    if cores:
        current = [int(_read(p) or 0) // 1000 for p in cores]
        limit = _read(cores[0].parent / "cpuinfo_max_freq")
        return {
            "source": "cpufreq",
            "current": current,
            "max": int(limit) // 1000 if limit and limit.isdigit() else NOT_EXPOSED,
            "governor": _read(cores[0].parent / "scaling_governor") or NOT_EXPOSED,
        }
    mhz = [round(float(v)) for k, v in _cpuinfo() if k == "cpu MHz"]
    if mhz:
        return {"source": "/proc/cpuinfo", "current": mhz, "max": NOT_EXPOSED, "governor": NOT_EXPOSED}
    return {"source": NOT_EXPOSED}


def temperatures_c() -> dict[str, float] | str:
    """Every thermal zone the kernel exposes, by its type (cpu-thermal, soc_thermal, GPU-therm, ...)."""
    zones = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        raw = _read(zone / "temp")
        if raw and raw.lstrip("-").isdigit():
            kind = _read(zone / "type") or zone.name
            zones[kind if kind not in zones else f"{kind}/{zone.name}"] = round(int(raw) / 1000, 1)  # two acpitz
    return zones or NOT_EXPOSED


def throttling() -> dict[str, Any] | str:
    """A Raspberry Pi's throttle flags from ``vcgencmd get_throttled``; elsewhere not exposed."""
    import shutil
    import subprocess

    tool = shutil.which("vcgencmd")
    if not tool:
        return NOT_EXPOSED
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        value = int(out.strip().split("=")[-1], 16)
    except (OSError, ValueError, subprocess.SubprocessError):
        return NOT_EXPOSED
    return {"raw": hex(value), "flags": [text for bit, text in THROTTLE_FLAGS.items() if value >> bit & 1]}


def clock_state() -> dict[str, Any]:
    """Clock, temperature, throttling and load now: taken before and after a benchmark."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_mhz": cpu_frequencies_mhz(),
        "temperature_c": temperatures_c(),
        "throttling": throttling(),
        "load_average_1m": round(load[0], 2) if load else NOT_EXPOSED,
    }


def peak_rss_mb() -> float | str:
    """This process's peak resident memory so far (``ru_maxrss``: KB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return NOT_EXPOSED
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def current_rss_mb() -> float | str:
    """Resident memory now, from /proc/self/statm (Linux)."""
    statm = _read("/proc/self/statm")
    if not statm:
        return NOT_EXPOSED
    return round(int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024), 1)
