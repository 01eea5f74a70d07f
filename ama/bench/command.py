"""The ``ama bench`` command: parse options, run a scenario against AMA and peers, report.

Register it in ``ama/cli.py`` with ``add_parser(commands)`` and dispatch
``args.command == "bench"`` to ``run(args)``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ama.bench import procfs, report
from ama.bench.pool import WorkerError
from ama.bench.scenarios import Run, run_connect, run_fanout, run_idle
from ama.bench.stats import LatencyHistogram
from ama.bench.systems import PEERS, ServerSetupError, make_system

SCENARIOS = ("idle", "fanout", "connect", "cross-region", "ingest", "crdt")
SOCKET_SCENARIOS = ("idle", "fanout", "connect", "cross-region")
LATENCY_SCENARIOS = ("fanout", "cross-region")
QUICK_LIMIT_S = 120.0

# (quick, full) defaults per scenario.
DEFAULTS = {
    "idle": {"connections": (5000, 10000)},
    "fanout": {"watchers": (5000, 5000), "voters": (100, 200), "rate": (200.0, 200.0), "duration": (5.0, 30.0)},
    "connect": {"connections": (2000, 5000)},
    "cross-region": {"watchers": (600, 3000), "voters": (50, 100), "rate": (50.0, 100.0), "duration": (5.0, 20.0)},
    "ingest": {"updates": (20000, 200000)},
    "crdt": {"votes": (50000, 500000)},
}
NOT_APPLICABLE = {
    "cross-region": "the peer runs as one server process with no regions",
    "ingest": "the peer has no durable store or core; ingest measures AMA's core in-process",
    "crdt": "measured in-process on ama.room.Room only",
}


def add_parser(commands) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse subparsers object and return its parser."""
    bench = commands.add_parser(
        "bench",
        help="measure AMA (and peer servers) under load",
        description=(
            "Run a load scenario against AMA and, with --vs, against peer servers in the same run, one after another, "
            "and report the figures, the ratios AMA/peer and the targets. Starts its own 'ama up' cluster unless "
            "--cluster names a running one. Clients run in several worker processes; with two or more CPUs the "
            "measured server is pinned to the first CPU and everything else to the others."
        ),
    )
    bench.add_argument("scenario", choices=SCENARIOS, help="idle: memory per idle socket; fanout: one room, many watchers, votes at a rate; "
                       "connect: a storm of connects; cross-region: votes in one region, watchers in the others; "
                       "ingest: the core's durable updates per second; crdt: memory per vote per replica")
    bench.add_argument("--vs", default="", metavar="PEERS", help=f"comma-separated peers to run too: {', '.join(PEERS)}")

    bench.add_argument("--quick", action="store_true", help="small settings that finish each scenario within two minutes")

    bench.add_argument("--watchers", type=int, help="watcher sockets (fanout, cross-region)")
    bench.add_argument("--voters", type=int, help="voter sockets; each votes once per question (fanout, cross-region)")
    bench.add_argument("--rate", type=float, help="votes per second (fanout, cross-region)")
    bench.add_argument("--duration", type=float, help="seconds of voting (fanout, cross-region)")
    bench.add_argument("--connections", type=int, help="sockets to open (idle, connect)")
    bench.add_argument("--steps", type=int, default=5, help="RSS readings while opening idle sockets (default: 5)")
    bench.add_argument("--concurrency", type=int, default=200, help="connects in flight at once over all workers (default: 200)")

    bench.add_argument("--updates", type=int, help="updates to store (ingest)")
    bench.add_argument("--votes", type=int, help="votes to apply (crdt)")

    bench.add_argument("--workers", type=int, default=4, help="client worker processes (default: 4)")
    bench.add_argument("--rounds", type=int, default=1, help="run every system this many times, alternating; figures are medians (default: 1)")
    bench.add_argument("--cluster", type=Path, help="cluster.json of a running AMA cluster to measure instead of starting 'ama up'")
    bench.add_argument("--no-pin", action="store_true", help="do not pin the server and the clients to separate CPUs")
    bench.add_argument("--profile", action="store_true", help="sample AMA's edge with py-spy during fanout and summarize where its time went")
    bench.add_argument("--max-server-rss-mb", type=float, default=4096, help="stop a server started by the bench when its RSS passes this many MiB (default: 4096)")
    bench.add_argument("--drain", type=float, help="seconds to wait after the last vote for every watcher to show it (default: 8 with --quick, else 15)")

    bench.add_argument("--out", type=Path, default=Path("bench-results"), help="directory for the JSON and PNG of each run (default: ./bench-results)")
    bench.add_argument("--json", nargs="?", const="-", metavar="PATH", help="also write the JSON document to PATH, or to standard output without PATH")
    bench.add_argument("--time-limit", type=float, help="seconds the whole run may take (default: 120 with --quick, else 1800)")
    return bench


def resolve(args) -> dict:
    """Return the scenario's settings: options given on the command line, else the quick or full defaults."""
    pick = 0 if args.quick else 1
    settings = {name: values[pick] for name, values in DEFAULTS[args.scenario].items()}
    for name in ("watchers", "voters", "rate", "duration", "connections", "updates", "votes"):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    for name, value in settings.items():
        if value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}")
    return settings


def parse_peers(text: str) -> list[str]:
    peers = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in peers if name not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer {unknown[0]!r} in --vs; choose from {', '.join(PEERS)}")
    return peers


class Progress:
    """Timestamped progress lines on standard error."""

    def __init__(self):
        self.began = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f} s] {message}", file=sys.stderr, flush=True)


def run(args) -> int:
    """Run ``ama bench`` with parsed arguments; return the exit code."""
    try:
        settings = resolve(args)
        peers = parse_peers(args.vs)
    except ValueError as exc:
        print(f"ama bench: error: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1 or args.rounds < 1:
        print("ama bench: error: --workers and --rounds must be at least 1", file=sys.stderr)
        return 2

    # SIGTERM unwinds through every finally block, so the servers and workers started here are stopped.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    progress = Progress()
    time_limit = args.time_limit or (QUICK_LIMIT_S if args.quick else 1800.0)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        doc, histograms = execute(args, settings, peers, progress, time_limit)
    except (ServerSetupError, WorkerError, OSError, TimeoutError) as exc:
        print(f"ama bench: error: {exc}", file=sys.stderr)
        return 1

    doc["started_at"] = stamp
    doc["command"] = "ama " + " ".join(shlex.quote(word) for word in sys.argv[1:])
    doc["elapsed_s"] = round(time.monotonic() - progress.began, 1)
    write_outputs(args, doc, histograms, args.out / f"{args.scenario}-{stamp}", progress)
    return 0


def write_outputs(args, doc: dict, histograms: dict[str, LatencyHistogram], stem: Path, progress) -> None:
    """Draw the plot (when there are latencies), write STEM.json, print the table and, with --json, the document."""
    if histograms:
        plot_path = stem.with_suffix(".png")
        try:
            report.write_plot(plot_path, args.scenario, histograms, subtitle(args.scenario, doc["config"]))
            doc["plot"] = str(plot_path)
        except ImportError:
            progress("matplotlib is not installed, so no plot was drawn; install it with: pip install 'ama-mesh[bench]'")
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=2) + "\n")

    text = report.table(doc)
    if args.json == "-":
        print(text, file=sys.stderr)
        print(json.dumps(doc, indent=2))
    else:
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    progress(f"wrote {json_path}" + (f" and {doc['plot']}" if "plot" in doc else ""))


def subtitle(scenario: str, config: dict) -> str:
    return f"{config.get('watchers', 0)} watchers, {config.get('rate', 0):g} votes/s, {config.get('duration', 0):g} s; {config.get('placement', '')}"


def placement(args, scenario: str) -> tuple[list[int] | None, list[int] | None, str]:
    """Return (server CPUs, client CPUs, description) for this machine and scenario."""
    cpus = procfs.online_cpus()
    if args.no_pin or len(cpus) < 2:
        return None, None, "not pinned" + (" (one CPU)" if len(cpus) < 2 else "")
    if scenario == "cross-region":
        return None, cpus, "servers not pinned (several edges); clients on every CPU"
    return [cpus[0]], cpus[1:], f"server pinned to CPU {cpus[0]}; clients and other processes on CPU {','.join(map(str, cpus[1:]))} (sched_setaffinity on every thread, like taskset -a)"


def execute(args, settings: dict, peers: list[str], progress, time_limit: float) -> tuple[dict, dict[str, LatencyHistogram]]:
    scenario = args.scenario
    server_cpus, client_cpus, where = placement(args, scenario)
    config = {**settings, "rounds": args.rounds, "workers": args.workers, "placement": where, "quick": args.quick,
              "concurrency": args.concurrency, "rate_per_s": settings.get("rate", 0)}
    extra = {"load_average_at_start": load_average(), "source": source_state()}
    systems = ["ama", *peers]
    if scenario in ("ingest", "crdt"):
        results = {"ama": run_in_process(scenario, settings, args.rounds, progress)}
        results.update({peer: {"skipped": NOT_APPLICABLE[scenario]} for peer in peers})
        return report.document(scenario, results, config, procfs.machine_info(), extra), {}

    deadline = time.monotonic() + time_limit
    rounds: dict[str, list[dict]] = {name: [] for name in systems}
    from ama.bench.pool import WorkerPool

    with WorkerPool(args.workers, client_cpus, time_limit + 120) as pool:
        for number in range(args.rounds):
            for name in systems:
                if scenario == "cross-region" and name != "ama":
                    rounds[name].append({"skipped": NOT_APPLICABLE[scenario]})
                    continue
                if time.monotonic() > deadline:
                    rounds[name].append({"skipped": f"the time limit of {time_limit:.0f} s was reached first"})
                    continue
                progress(f"round {number + 1}/{args.rounds}: {name}")
                rounds[name].append(run_system(name, scenario, settings, args, pool, server_cpus, client_cpus, progress, extra))
    results = {name: combine(values) for name, values in rounds.items()}
    histograms = {}
    if scenario in LATENCY_SCENARIOS:
        for name, values in rounds.items():
            merged = LatencyHistogram()
            for value in values:
                if "_histogram" in value:
                    merged.merge(value["_histogram"])
            if merged.count:
                histograms[name] = merged
    return report.document(scenario, results, config, procfs.machine_info(), extra), histograms


def run_system(name: str, scenario: str, settings: dict, args, pool, server_cpus, client_cpus, progress, extra: dict) -> dict:
    """Start one system, pin it, run the scenario once, stop it; return its figures (or an error entry)."""
    system = make_system(name, progress, args.cluster, args.out)
    run = Run(
        watchers=int(settings.get("watchers", 0)), voters=int(settings.get("voters", 0)), rate=float(settings.get("rate", 0)),
        duration_s=float(settings.get("duration", 0)), connections=int(settings.get("connections", 0)), steps=args.steps,
        concurrency=args.concurrency, client_cpus=client_cpus or [], progress=progress, max_server_rss_mb=args.max_server_rss_mb,
        drain_s=args.drain or (8.0 if args.quick else 15.0), server_cpu=server_cpus[0] if server_cpus else None,
    )
    if args.profile and name == "ama" and scenario == "fanout":
        run.profile_path = args.out / f"profile-{name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.txt"
    try:
        system.start()
        pin_system(system, server_cpus, client_cpus)
        if scenario == "idle":
            return run_idle(system, pool, run)
        if scenario == "connect":
            return run_connect(system, pool, run)
        figures = run_fanout(system, pool, run, cross_region=scenario == "cross-region")
        if "_profile" in figures:
            extra["profile"] = figures.pop("_profile")
        return figures
    except ServerSetupError as exc:
        progress(f"{name}: {exc}")
        return {"error": str(exc)}
    finally:
        system.stop()


def pin_system(system, server_cpus, client_cpus) -> None:
    if server_cpus and system.server_pid:
        procfs.pin(system.server_pid, set(server_cpus))
    if client_cpus:
        for pid in system.other_pids():
            try:
                procfs.pin(pid, set(client_cpus))
            except OSError:
                pass


def run_in_process(scenario: str, settings: dict, rounds: int, progress) -> dict:
    from ama.bench.core_scenarios import run_crdt, run_ingest

    values = []
    for _ in range(rounds):
        if scenario == "ingest":
            values.append(run_ingest(int(settings["updates"]), progress))
        else:
            values.append(run_crdt(int(settings["votes"]), progress))
    return combine(values)


def combine(values: list[dict]) -> dict:
    """Combine one system's rounds: the median of each number, the last value of anything else."""
    usable = [value for value in values if "error" not in value and "skipped" not in value]
    if not usable:
        return values[-1] if values else {"skipped": "not run"}
    if len(usable) == 1:
        return usable[0]
    combined = dict(usable[-1])
    for key, value in usable[-1].items():
        numbers = [v.get(key) for v in usable]
        if all(isinstance(n, (int, float)) and not isinstance(n, bool) and not (isinstance(n, float) and math.isnan(n)) for n in numbers):
            combined[key] = statistics.median(numbers)
    combined["rounds"] = len(usable)
    return combined


def source_state() -> dict:
    """Return the checkout's commit and whether the server code differs from it (read-only git calls)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "ama", "edge", "core", "region"], cwd=root,
                                 capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return {}
    changed = [line[3:] for line in changed if line.strip() and not line[3:].startswith("ama/bench/")]
    return {"commit": commit or None, "uncommitted_server_files": changed}


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    """Run ``ama bench`` on its own (``python -m ama.bench.command``), before it is registered in ``ama``."""
    parser = argparse.ArgumentParser(prog="ama")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
