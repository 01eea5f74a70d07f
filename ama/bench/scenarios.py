"""The socket scenarios (idle, fanout, connect, cross-region): one function per scenario, run once per system.

Each function starts nothing itself: it gets a started system, a worker
pool and a ``Run`` with the settings, and returns that system's figures.
Every wait is bounded by a timeout, and every load loop by a count and a
deadline (see ``worker.py``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ama.bench import procfs
from ama.bench.pool import WorkerPool, split
from ama.bench.stats import LatencyHistogram, fit_line
from ama.bench.systems import ServerSetupError

OPEN_CONCURRENCY = 100
SETTLE_S = 1.0
# Client workers busier than this share of their CPUs are the bottleneck, and latencies include their lag.
CLIENT_BOUND_SHARE = 0.9


@dataclass
class Run:
    """Settings of one scenario run, the same for every system."""

    watchers: int = 0
    voters: int = 0
    rate: float = 0.0
    duration_s: float = 0.0
    connections: int = 0
    steps: int = 5
    concurrency: int = OPEN_CONCURRENCY
    drain_s: float = 10.0
    open_timeout_s: float = 120.0
    client_cpus: list[int] = field(default_factory=list)
    progress: object = print
    max_server_rss_mb: float = 4096.0
    # The CPU the server is pinned to, or None when it is not pinned.
    server_cpu: int | None = None
    # Where to write a py-spy profile of the server taken while votes are sent (fanout only); None for no profile.
    profile_path: Path | None = None


class RssGuard:
    """Stop a server we started when its RSS passes a limit, so that an overloaded server cannot take the machine's memory.

    A server that cannot keep up queues every frame it owes its clients;
    with thousands of watchers that grows by gigabytes within seconds.
    """

    def __init__(self, pid: int | None, limit_mb: float, may_stop: bool, period_s: float = 0.25):
        self.pid = pid
        self.limit = limit_mb * 2**20
        self.may_stop = may_stop and pid is not None
        self.period_s = period_s
        self.peak = 0
        self.tripped = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rss-guard", daemon=True)

    def __enter__(self) -> "RssGuard":
        if self.pid:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _watch(self) -> None:
        while not self._done.wait(self.period_s):
            try:
                rss = procfs.rss_bytes(self.pid)
            except OSError:
                return
            self.peak = max(self.peak, rss)
            if rss > self.limit and self.may_stop:
                self.tripped = True
                procfs.stop_pid(self.pid, timeout_s=2)
                return


class Window:
    """CPU time of the server and of the client workers, and wall time, between ``start`` and ``stop``.

    With ``server_cpu`` set (the CPU the server is pinned to), it also
    reports how busy that CPU was, and the share spent in soft interrupts,
    where the kernel delivers loopback traffic: time the server's own CPU
    counters do not show.
    """

    def __init__(self, server_pid: int | None, pool: WorkerPool, server_cpu: int | None = None):
        self.server_pid = server_pid
        self.pool = pool
        self.server_cpu = server_cpu
        self.cpu_began: dict[str, int] | None = None

    def _read(self) -> tuple[float, float | None, float, float | None]:
        server = procfs.cpu_seconds(self.server_pid) if self.server_pid else None
        waited = procfs.runqueue_wait_seconds(self.server_pid) if self.server_pid else None
        return time.monotonic(), server, self.pool.cpu_seconds(), waited

    def start(self) -> None:
        self.began = self._read()
        if self.server_cpu is not None:
            self.cpu_began = procfs.cpu_jiffies(self.server_cpu)

    def cpu_shares(self) -> dict:
        if self.cpu_began is None:
            return {}
        ended = procfs.cpu_jiffies(self.server_cpu)
        delta = {name: ended[name] - self.cpu_began[name] for name in ended}
        total = sum(delta.values()) or 1
        return {"server_cpu_busy_share": round(1 - (delta["idle"] + delta["iowait"]) / total, 2),
                "server_cpu_softirq_share": round(delta["softirq"] / total, 2)}

    def stop(self) -> dict:
        ended = self._read()
        wall = ended[0] - self.began[0]
        server = None if ended[1] is None else ended[1] - self.began[1]
        waited = None if ended[3] is None else ended[3] - self.began[3]
        clients = ended[2] - self.began[2]
        return {"wall_s": wall, "server_cpu_s": server, "client_cpu_s": clients, "server_wait_s": waited, **self.cpu_shares()}


def client_share(window: dict, run: Run, pool: WorkerPool) -> float:
    cpus = max(1, min(len(run.client_cpus) or procfs.online_cpus().__len__(), len(pool)))
    return window["client_cpu_s"] / (window["wall_s"] * cpus) if window["wall_s"] > 0 else 0.0


def open_spread(pool: WorkerPool, role: str, setup_dialect: dict, urls: list[str], tokens: list[str], total: int, run: Run, watch: bool,
                workers: list[int] | None = None) -> dict:
    """Open ``total`` sockets spread over ``workers`` (default: all); return the summed counts and connect times."""
    workers = workers if workers is not None else list(range(len(pool)))
    counts = split(total, len(workers))
    calls = [
        (index, "open", {"role": role, "dialect": setup_dialect, "urls": urls, "tokens": tokens, "count": count,
                         "concurrency": max(1, run.concurrency // len(workers)), "timeout_s": run.open_timeout_s, "watch": watch})
        for index, count in zip(workers, counts) if count
    ]
    replies = pool.call_many(calls, run.open_timeout_s + 30)
    histogram = LatencyHistogram()
    errors: dict[str, int] = {}
    retries: dict[str, int] = {}
    for reply in replies:
        histogram.merge(LatencyHistogram.from_dict(reply["connect_ms"]))
        for message, count in reply["errors"].items():
            errors[message] = errors.get(message, 0) + count
        for reason, count in reply["retries"].items():
            retries[reason] = retries.get(reason, 0) + count
    return {
        "opened": sum(reply["opened"] for reply in replies),
        "failed": sum(reply["failed"] for reply in replies),
        "errors": errors,
        "retries": retries,
        "elapsed_s": max((reply["elapsed_s"] for reply in replies), default=0.0),
        "connect_ms": histogram,
    }


def prime_room(pool: WorkerPool, setup, run: Run) -> None:
    """Open one socket in the room before a crowd joins, so that the crowd does not race to open it."""
    reply = pool.call(0, "open", run.open_timeout_s + 30, role="primer", dialect=setup.dialect, urls=setup.watcher_urls[:1],
                      tokens=setup.watcher_tokens[:1], count=1, concurrency=1, timeout_s=run.open_timeout_s)
    if reply["opened"] != 1:
        raise ServerSetupError(f"the first socket failed to join the room ({reply['errors']}); check the server's log")


def merge_errors(results: list[dict]) -> dict[str, int]:
    errors: dict[str, int] = {}
    for result in results:
        for message, count in result.get("errors", {}).items():
            errors[message] = errors.get(message, 0) + count
    return errors


def frames_of(pool: WorkerPool, role_prefix: str) -> int:
    total = 0
    for counts in pool.call_all("count", 30):
        total += sum(role["frames"] for name, role in counts.items() if name.startswith(role_prefix))
    return total


def rss_settled(pid: int, timeout_s: float = 3.0) -> int:
    """Read VmRSS until two reads 0.5 s apart differ by under 1 % (or the timeout); return the last."""
    deadline = time.monotonic() + timeout_s
    last = procfs.rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = procfs.rss_bytes(pid)
        if abs(now - last) <= 0.01 * last:
            return now
        last = now
    return last


# -- idle ------------------------------------------------------------------------------


def run_idle(system, pool: WorkerPool, run: Run) -> dict:
    """Open ``connections`` idle sockets in ``steps`` equal steps; fit the server's RSS against the socket count."""
    pid = system.server_pid
    setup = system.prepare(0, run.connections, 0)
    prime_room(pool, setup, run)
    baseline = procfs.rss_bytes(pid) if pid else None

    points: list[tuple[int, int]] = []
    opened = failed = 0
    errors: dict[str, int] = {}
    per_step = split(run.connections, run.steps)
    for step, count in enumerate(per_step, 1):
        result = open_spread(pool, "idle", setup.dialect, setup.watcher_urls, setup.watcher_tokens, count, run, watch=False)
        opened += result["opened"]
        failed += result["failed"]
        for message, n in result["errors"].items():
            errors[message] = errors.get(message, 0) + n
        time.sleep(SETTLE_S)
        if pid:
            points.append((opened, rss_settled(pid)))
        run.progress(f"{system.name}: {opened} idle sockets open" + (f", RSS {points[-1][1] / 2**20:.1f} MiB" if pid else ""))

    still_open = sum(counts.get("idle", {}).get("sockets", 0) - counts.get("idle", {}).get("closed", 0) for counts in pool.call_all("count", 30))
    pool.call_all("close", 60)

    result = {"connections": opened, "failed": failed, "errors": errors, "still_open": still_open}
    if pid and len({n for n, _ in points}) >= 2:
        fit = fit_line([n for n, _ in points], [rss for _, rss in points])
        result.update({
            "kb_per_connection": round(fit.slope / 1024, 2),
            "fit_r_squared": round(fit.r_squared, 4),
            "baseline_rss_mb": round(baseline / 2**20, 1),
            "rss_mb_at": {str(n): round(rss / 2**20, 1) for n, rss in points},
        })
    else:
        result["kb_per_connection"] = None
    return result


# -- fanout ----------------------------------------------------------------------------


def question_count(run: Run) -> int:
    votes = vote_count(run)
    return max(1, math.ceil(votes / max(1, run.voters)))


def vote_count(run: Run) -> int:
    return max(1, int(run.rate * run.duration_s))


def run_fanout(system, pool: WorkerPool, run: Run, cross_region: bool = False) -> dict:
    """Watchers and voters in one room; votes at ``rate`` for ``duration_s``; latency, frames and server CPU."""
    setup = system.prepare(run.voters, run.watchers, question_count(run), cross_region=cross_region)
    voter = open_voters(pool, setup, run)
    watcher_roles = open_watchers(pool, setup, run, cross_region)
    opened_watchers = sum(result["opened"] for result in watcher_roles.values())
    run.progress(f"{system.name}: {voter['opened']} voters and {opened_watchers} watchers joined")
    if voter["opened"] == 0 or opened_watchers == 0:
        pool.call_all("close", 60)
        return {"error": f"no sockets joined: voters {voter['errors']} watchers {[r['errors'] for r in watcher_roles.values()]}"}
    time.sleep(SETTLE_S)

    window = Window(system.server_pid, pool, run.server_cpu)
    frames_before = frames_of(pool, "watcher")
    window.start()
    profiler = start_profiler(system, run)
    votes = vote_count(run)
    start_at = time.monotonic() + 0.5
    run.progress(f"{system.name}: sending {votes} votes at {run.rate:g}/s")
    with RssGuard(system.server_pid, run.max_server_rss_mb, system.started_here) as guard:
        sent_reply = pool.call(0, "vote", run.duration_s + 60, role="voter", questions=setup.questions, rate=run.rate, count=votes,
                               start_at=start_at, timeout_s=run.duration_s + 30)
        sent = {question: times for question, times in sent_reply["sent"].items() if times}
        targets = {question: len(times) for question, times in sent.items()}
        lagging = 0
        for role in watcher_roles:
            replies = pool.call_all("wait_counts", run.drain_s + 30, role=role, targets=targets, timeout_s=run.drain_s)
            lagging += sum(reply["lagging"] for reply in replies)
        measured = None if guard.tripped else window.stop()
    if guard.tripped or measured is None:
        run.progress(f"{system.name}: stopped the server: its RSS passed {run.max_server_rss_mb:g} MiB")
        pool.call_all("close", 60)
        return {"error": f"server stopped after its RSS passed {run.max_server_rss_mb:g} MiB (--max-server-rss-mb): it could not keep up",
                "votes_sent": sum(len(times) for times in sent_reply["sent"].values()), "server_rss_peak_mb": round(guard.peak / 2**20)}
    frames = frames_of(pool, "watcher") - frames_before
    profile = profiler.wait(run.drain_s + 30) if profiler else None

    histograms: dict[str, LatencyHistogram] = {}
    missing = 0
    for role in watcher_roles:
        histogram = LatencyHistogram()
        for reply in pool.call_all("latency", 120, role=role, sent=sent):
            histogram.merge(LatencyHistogram.from_dict(reply["histogram"]))
            missing += reply["missing"]
        histograms[role] = histogram
    try:
        rss = procfs.rss_bytes(system.server_pid) if system.server_pid else None
    except OSError:
        rss = None
    pool.call_all("close", 60)
    figures = fanout_figures(system, run, voter, watcher_roles, sent_reply, measured, frames, histograms, missing, lagging, rss, pool)
    if profiler is not None:
        figures["_profile"] = {"system": system.name, "pid": system.server_pid, "raw": str(profiler.output), "summary": profile}
    return figures


def start_profiler(system, run: Run):
    if run.profile_path is None or not system.server_pid:
        return None
    from ama.bench.profile import Profiler

    return Profiler(system.server_pid, run.duration_s + 1, run.profile_path)


def open_voters(pool: WorkerPool, setup, run: Run) -> dict:
    """Open the voters, all in worker 0 (their send times must come from one schedule)."""
    reply = pool.call(0, "open", run.open_timeout_s + 30, role="voter", dialect=setup.dialect, urls=setup.voter_urls, tokens=setup.voter_tokens,
                      count=run.voters, concurrency=run.concurrency, timeout_s=run.open_timeout_s, watch=False)
    return reply


def open_watchers(pool: WorkerPool, setup, run: Run, cross_region: bool) -> dict[str, dict]:
    """Open the watchers on every worker but the voters' one (when there are two or more), so that
    watcher load cannot delay the vote schedule."""
    workers = list(range(1, len(pool))) if len(pool) > 1 else [0]
    if not cross_region:
        return {"watcher": open_spread(pool, "watcher", setup.dialect, setup.watcher_urls, setup.watcher_tokens, run.watchers, run, True, workers)}
    results = {}
    per_region = split(run.watchers, len(setup.watcher_urls))
    for url, count in zip(setup.watcher_urls, per_region):
        role = f"watcher:{setup.regions[url]}"
        results[role] = open_spread(pool, role, setup.dialect, [url], setup.watcher_tokens, count, run, True, workers)
    return results


def fanout_figures(system, run: Run, voter: dict, watcher_roles: dict, sent_reply: dict, measured: dict, frames: int,
                   histograms: dict[str, LatencyHistogram], missing: int, lagging: int, rss: int | None, pool: WorkerPool) -> dict:
    merged = LatencyHistogram()
    for histogram in histograms.values():
        merged.merge(histogram)
    votes_sent = sum(len(times) for times in sent_reply["sent"].values())
    opened = sum(result["opened"] for result in watcher_roles.values())
    cpu = measured["server_cpu_s"]
    share = client_share(measured, run, pool)
    figures = {
        "watchers": opened,
        "watchers_failed": sum(result["failed"] for result in watcher_roles.values()),
        "join_errors": merge_errors([voter, *watcher_roles.values()]),
        "voters": voter["opened"],
        "votes_sent": votes_sent,
        "votes_late": sent_reply["late"],
        "rate_per_s": run.rate,
        "window_s": round(measured["wall_s"], 2),
        "frames_delivered": frames,
        "server_cpu_s": None if cpu is None else round(cpu, 2),
        "server_cpu_wait_s": None if measured["server_wait_s"] is None else round(measured["server_wait_s"], 2),
        "server_cpu_busy_share": measured.get("server_cpu_busy_share"),
        "server_cpu_softirq_share": measured.get("server_cpu_softirq_share"),
        "frames_per_cpu_second": round(frames / cpu) if cpu else None,
        # Each watcher showing each vote counts once, however many frames carried them.
        "votes_shown_per_cpu_second": round(merged.count / cpu) if cpu else None,
        **merged.summary(),
        "missing_shows": missing,
        "lagging_watchers": lagging,
        "server_rss_mb": None if rss is None else round(rss / 2**20, 1),
        "client_cpu_share": round(share, 2),
        "client_bound": share >= CLIENT_BOUND_SHARE,
    }
    if len(histograms) > 1:
        # Only the voters' edge is measured, so CPU-based figures would leave out the watchers' edges.
        for name in ("server_cpu_s", "server_cpu_wait_s", "server_cpu_busy_share", "server_cpu_softirq_share", "frames_per_cpu_second", "votes_shown_per_cpu_second"):
            figures.pop(name)
        for role, histogram in histograms.items():
            summary = histogram.summary()
            region = role.split(":", 1)[1]
            for name in ("p50_ms", "p99_ms", "p999_ms"):
                figures[f"{region}_{name}"] = summary[name]
    figures["_histogram"] = merged
    return figures


# -- connect ---------------------------------------------------------------------------


def run_connect(system, pool: WorkerPool, run: Run) -> dict:
    """Open ``connections`` sockets at once (at most ``concurrency`` in flight); accepted per second."""
    setup = system.prepare(0, run.connections, 0)
    prime_room(pool, setup, run)
    window = Window(system.server_pid, pool, run.server_cpu)
    overflows = procfs.listen_overflows()
    window.start()
    result = open_spread(pool, "storm", setup.dialect, setup.watcher_urls, setup.watcher_tokens, run.connections, run, watch=False)
    measured = window.stop()
    overflows = procfs.listen_overflows() - overflows
    pool.call_all("close", 60)
    elapsed = result["elapsed_s"]
    cpu = measured["server_cpu_s"]
    connect_ms = result["connect_ms"]
    figures = {
        "connections": run.connections,
        "accepted": result["opened"],
        "failed": result["failed"],
        "errors": result["errors"],
        "retried": sum(result["retries"].values()),
        "retry_reasons": result["retries"],
        "concurrency": run.concurrency,
        "elapsed_s": round(elapsed, 2),
        "accepted_per_second": round(result["opened"] / elapsed, 1) if elapsed else None,
        "server_cpu_ms_per_connection": round(cpu * 1000 / result["opened"], 3) if cpu and result["opened"] else None,
        "connect_p50_ms": round(connect_ms.percentile(50), 2) if connect_ms.count else None,
        "connect_p99_ms": round(connect_ms.percentile(99), 2) if connect_ms.count else None,
        # Machine-wide: SYNs dropped on a full accept queue; each costs the client a 1 s retransmission.
        "listen_overflows": overflows,
        "client_cpu_share": round(client_share(measured, run, pool), 2),
        "server_cpu_busy_share": measured.get("server_cpu_busy_share"),
        "server_cpu_softirq_share": measured.get("server_cpu_softirq_share"),
    }
    figures["client_bound"] = figures["client_cpu_share"] >= CLIENT_BOUND_SHARE
    return figures
