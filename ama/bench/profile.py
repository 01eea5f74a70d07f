"""Sample a server process with py-spy while a scenario runs, and summarize where its time went.

``py-spy record --format raw`` writes collapsed stacks: one line per
distinct stack, frames joined by ``;`` from the root to the leaf, then a
space and the sample count.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ama.bench import procfs


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """One ``py-spy record`` run on a process, stopped by its process id."""

    def __init__(self, pid: int, duration_s: float, output: Path, rate: int = 200):
        executable = py_spy()
        if executable is None:
            raise FileNotFoundError("py-spy not found; install it with: pip install 'ama-mesh[bench]'")
        self.output = output
        self.log = output.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [executable, "record", "--pid", str(pid), "--duration", str(max(1, int(duration_s))), "--rate", str(rate),
                 "--format", "raw", "--output", str(output), "--nonblocking"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def wait(self, timeout_s: float) -> dict | None:
        """Wait for py-spy to write its output; return the summary, or None when it wrote none."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            procfs.stop_pid(self.process.pid, timeout_s=5)
            self.process.wait(timeout=5)
        if not self.output.exists():
            return None
        return summarize(self.output.read_text())


def summarize(collapsed: str, top: int = 12) -> dict:
    """Return the total samples, the frames with the most samples at the leaf (self) and on the stack (inclusive)."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [short_frame(frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            if not is_scaffolding(frame):
                inclusive[frame] += samples
    if total == 0:
        return {"samples": 0, "self": [], "inclusive": []}

    def shares(counter: Counter) -> list[dict]:
        return [{"frame": frame, "share": round(samples / total, 3)} for frame, samples in counter.most_common(top)]

    return {"samples": total, "self": shares(own), "inclusive": shares(inclusive)}


SCAFFOLDING = ("runpy", "asyncio/runners.py", "asyncio/base_events.py", "asyncio/events.py", "<module>", "main (")


def is_scaffolding(frame: str) -> bool:
    """Tell whether a frame is on nearly every stack (the interpreter's and the event loop's entry points)."""
    return any(part in frame for part in SCAFFOLDING)


def short_frame(frame: str) -> str:
    """Shorten 'function (/long/path/to/package/module.py:123)' to 'function (package/module.py)'."""
    name, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    return f"{name} ({'/'.join(parts[-2:])})" if parts else name
