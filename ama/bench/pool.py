"""The coordinator's side of the worker processes: start, command, stop by process id."""

from __future__ import annotations

import multiprocessing
import time

from ama.bench import procfs
from ama.bench.worker import worker_main


class WorkerError(Exception):
    """A worker failed a command, timed out, or died."""


class WorkerPool:
    """``size`` worker processes pinned to ``cpus``; each lives at most ``lifetime_s``."""

    def __init__(self, size: int, cpus: list[int] | None, lifetime_s: float):
        context = multiprocessing.get_context("spawn")
        self.workers = []
        for index in range(size):
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs, cpus, lifetime_s), name=f"ama-bench-worker-{index}", daemon=True)
            process.start()
            theirs.close()
            self.workers.append((process, ours))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self.workers]

    def __len__(self) -> int:
        return len(self.workers)

    def send(self, index: int, op: str, **args) -> None:
        process, connection = self.workers[index]
        connection.send({"op": op, "args": args})

    def receive(self, index: int, timeout_s: float) -> dict:
        process, connection = self.workers[index]
        deadline = time.monotonic() + timeout_s
        while not connection.poll(0.2):
            if not process.is_alive():
                raise WorkerError(f"worker {index} (pid {process.pid}) exited with code {process.exitcode}")
            if time.monotonic() > deadline:
                raise WorkerError(f"worker {index} (pid {process.pid}) did not reply within {timeout_s:.0f} s")
        reply = connection.recv()
        if "error" in reply:
            raise WorkerError(f"worker {index} failed: {reply['error']}\n{reply.get('traceback', '')}")
        return reply

    def call(self, index: int, op: str, wait_s: float, **args) -> dict:
        """Send one command and return its reply; ``wait_s`` bounds the wait for the reply."""
        self.send(index, op, **args)
        return self.receive(index, wait_s)

    def call_many(self, calls: list[tuple[int, str, dict]], wait_s: float) -> list[dict]:
        """Send every (worker index, op, args) first, then collect the replies in order."""
        for index, op, args in calls:
            self.send(index, op, **args)
        return [self.receive(index, wait_s) for index, _, _ in calls]

    def call_all(self, op: str, wait_s: float, **args) -> list[dict]:
        return self.call_many([(index, op, args) for index in range(len(self))], wait_s)

    def cpu_seconds(self) -> float:
        total = 0.0
        for process, _ in self.workers:
            try:
                total += procfs.cpu_seconds(process.pid)
            except OSError:
                pass
        return total

    def stop(self) -> None:
        """Ask every worker to exit, then stop any that is still alive by its process id."""
        for process, connection in self.workers:
            try:
                connection.send({"op": "exit"})
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        for process, connection in self.workers:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                procfs.stop_pid(process.pid, timeout_s=2)
                process.join(1)
            connection.close()
        self.workers = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def split(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` counts that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
