"""Results of a bench run: the JSON document, ratios against peers, targets, the table and the plot.

Pure code except ``write_plot``, which imports matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

from ama.bench.stats import LatencyHistogram

# The figures each scenario reports first, with True where higher is better.
HEADLINES: dict[str, list[tuple[str, bool]]] = {
    "idle": [("kb_per_connection", False)],
    "fanout": [("frames_per_cpu_second", True), ("votes_shown_per_cpu_second", True), ("p50_ms", False), ("p99_ms", False), ("p999_ms", False)],
    "connect": [("accepted_per_second", True), ("server_cpu_ms_per_connection", False)],
    "cross-region": [("p50_ms", False), ("p99_ms", False), ("p999_ms", False)],
    "ingest": [("updates_per_second", True), ("updates_per_second_one_per_transaction", True)],
    "crdt": [("bytes_per_vote", False), ("bytes_per_vote_producer", False), ("votes_applied_per_second", True)],
}

MAX_KB_PER_IDLE_CONNECTION = 16.0
MIN_FRAMES_PER_CPU_VS_NODE_WS = 1.0
MAX_P99_MS = 100.0
TARGET_WATCHERS = 5000
TARGET_RATE = 200.0


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """Return ours / theirs rounded to 0.01, or None when either is missing or theirs is 0."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 2)


def ratios(scenario: str, results: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """Return, per peer, ama's headline figures divided by the peer's."""
    ours = results.get("ama", {})
    table = {}
    for peer, figures in results.items():
        if peer == "ama" or "skipped" in figures or "error" in figures:
            continue
        table[peer] = {name: ratio(ours.get(name), figures.get(name)) for name, _ in HEADLINES.get(scenario, [])}
    return table


def targets(scenario: str, results: dict[str, dict], config: dict) -> list[dict]:
    """Return the targets this scenario can check, each with its value, limit and whether it was met."""
    ours = results.get("ama", {})
    checks = []
    if scenario == "idle":
        value = ours.get("kb_per_connection")
        checks.append({"target": "idle memory per connection", "figure": "kb_per_connection", "value": value,
                       "limit": f"<= {MAX_KB_PER_IDLE_CONNECTION:g} KiB", "met": None if value is None else value <= MAX_KB_PER_IDLE_CONNECTION})
    if scenario == "fanout":
        node = results.get("node-ws", {})
        value = ratio(ours.get("frames_per_cpu_second"), node.get("frames_per_cpu_second"))
        checks.append({"target": "delivered frames per server CPU-second vs node-ws", "figure": "frames_per_cpu_second ratio", "value": value,
                       "limit": f">= {MIN_FRAMES_PER_CPU_VS_NODE_WS:g}x", "met": None if value is None else value >= MIN_FRAMES_PER_CPU_VS_NODE_WS,
                       "note": None if value is not None else "run with --vs node-ws to measure it"})
        value = ours.get("p99_ms")
        at_load = config.get("watchers", 0) >= TARGET_WATCHERS and config.get("rate_per_s", 0) >= TARGET_RATE
        checks.append({"target": f"vote-to-screen p99 with {TARGET_WATCHERS} watchers and {TARGET_RATE:g} votes/s", "figure": "p99_ms", "value": value,
                       "limit": f"<= {MAX_P99_MS:g} ms", "met": None if value is None or not at_load else value <= MAX_P99_MS,
                       "note": None if at_load else f"measured below the target load; run with --watchers {TARGET_WATCHERS} --rate {TARGET_RATE:g}"})
    return checks


def public_results(results: dict[str, dict]) -> dict[str, dict]:
    """Return the results without private keys (those starting with '_', such as histograms)."""
    return {system: {key: value for key, value in figures.items() if not key.startswith("_")} for system, figures in results.items()}


def document(scenario: str, results: dict[str, dict], config: dict, machine: dict, extra: dict | None = None) -> dict:
    """Build the JSON document of a run: {"scenario", "results": {system: figures}, "ratios", "targets", ...}."""
    return {
        "scenario": scenario,
        "results": public_results(results),
        "ratios": ratios(scenario, results),
        "targets": targets(scenario, results, config),
        "config": config,
        "machine": machine,
        **(extra or {}),
    }


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(doc: dict) -> str:
    """Render a run's document as plain-text tables: figures per system, ratios, targets."""
    results = doc["results"]
    systems = list(results)
    names: list[str] = []
    for figures in results.values():
        for name, value in figures.items():
            if name not in names and not isinstance(value, dict):
                names.append(name)
    lines = [f"scenario: {doc['scenario']}", ""]
    lines += grid(["figure", *systems], [[name, *(format_value(results[s].get(name)) for s in systems)] for name in names])
    if doc["ratios"]:
        peers = list(doc["ratios"])
        headline = [name for name, _ in HEADLINES.get(doc["scenario"], [])]
        lines += ["", "ama / peer"]
        lines += grid(["figure", *peers], [[name, *(format_value(doc["ratios"][p].get(name)) for p in peers)] for name in headline])
    if doc["targets"]:
        lines += ["", "targets"]
        rows = []
        for check in doc["targets"]:
            met = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
            rows.append([check["target"], format_value(check["value"]), check["limit"], met + (f" ({check['note']})" if check.get("note") else "")])
        lines += grid(["target", "value", "limit", "result"], rows)
    return "\n".join(lines)


def grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(cell).ljust(widths[0]) if i == 0 else str(cell).rjust(widths[i]) for i, cell in enumerate(cells))

    return [line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)]


def write_plot(path, scenario: str, histograms: dict[str, LatencyHistogram], subtitle: str) -> None:
    """Write a PNG of each system's vote-to-screen latency distribution (a CDF on a log axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cdf_axes, tail_axes) = plt.subplots(1, 2, figsize=(12, 4.8))
    for system, histogram in histograms.items():
        if histogram.count == 0:
            continue
        points = histogram.cdf()
        xs = [x for x, _ in points]
        cdf_axes.step(xs, [y for _, y in points], where="post", label=f"{system} (p99 {histogram.percentile(99):.1f} ms)")
        # The tail: the share of shows slower than x, on a log scale, makes p99 and p99.9 readable.
        tail_axes.step(xs, [max(1 - y, 1e-6) for _, y in points], where="post", label=system)
    for axes in (cdf_axes, tail_axes):
        axes.set_xscale("log")
        axes.set_xlabel("vote-to-screen latency (ms)")
        axes.grid(True, which="both", alpha=0.3)
        axes.axvline(MAX_P99_MS, color="grey", linestyle="--", linewidth=1)
    cdf_axes.set_ylabel("share of shows at or below")
    tail_axes.set_yscale("log")
    tail_axes.set_ylabel("share of shows slower (1 - CDF)")
    cdf_axes.legend(loc="lower right", fontsize=8)
    tail_axes.legend(loc="upper right", fontsize=8)
    figure.suptitle(f"ama bench {scenario}: {subtitle}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
