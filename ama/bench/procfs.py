"""Read a process's memory and CPU time from /proc, and pin processes to CPUs (Linux only)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Return the resident set size (VmRSS in /proc/PID/status) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS line in /proc/{pid}/status: is process {pid} a zombie?")


def cpu_seconds(pid: int) -> float:
    """Return user plus system CPU time of every thread of a process (utime + stime in /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name in field 2 may contain spaces and parentheses: fields start after the last ')'.
    fields = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def runqueue_wait_seconds(pid: int) -> float:
    """Return the time every thread of a process spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat, field 2).

    A server that waits long for a CPU shares it with other processes, so its latencies include that wait.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def cpu_jiffies(cpu: int) -> dict[str, int]:
    """Return one CPU's time counters from /proc/stat, in clock ticks: user, nice, system, idle, iowait, irq, softirq, steal."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            return dict(zip(names, (int(value) for value in line.split()[1:9])))
    raise OSError(f"cpu{cpu} not found in /proc/stat")


def listen_overflows() -> int:
    """Return this machine's TcpExt ListenOverflows counter (/proc/net/netstat): SYNs dropped because an accept queue was full."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:]))["ListenOverflows"])
    raise OSError("no TcpExt line in /proc/net/netstat")


def pin(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of ``pid`` (like ``taskset -a -p``); new threads inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:
            pass


def online_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_pid(pid: int, timeout_s: float = 10.0) -> None:
    """Send SIGTERM to one process we started, then SIGKILL if it is still alive after ``timeout_s``."""
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def machine_info() -> dict:
    """Return the CPU count, CPU model, memory size and kernel of this machine, from /proc."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": os.uname().release,
    }
