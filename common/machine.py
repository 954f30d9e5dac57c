"""This machine: the CPU cores a process may use and the processor's name (no torch: executors import it light)."""
import os
import platform
from pathlib import Path


def usable_cores():
    """CPU cores this process may run on (taskset and container limits respected where the OS says), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_name():
    """The processor's model name (Linux's /proc/cpuinfo), else what the platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
