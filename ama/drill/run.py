"""``ama drill``: inject a fault into a cluster started by ``ama up`` under a synthetic audience.

Phases: ``before`` (audience warms up), ``during`` (fault injected and held),
``after`` (fault restored). Then every client's outbox must drain (every
intent committed), every replica (each edge with the room open, each region
service, the core) must show the same digest, and the history must check out.

The audience is bounded: ``clients_per_region`` clients, each sending at
most one vote per ``interval_s`` and at most ``max_intents`` in all, for at
most the phases' total time.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ama import netns, plan as plans, subjects
from ama.client import ReconnectingClient
from ama.drill.history import History, Sent, Verdict, check, percentile
from ama.supervisor import UpError, request_restart

FAULTS = ("kill-region", "hang-region", "partition-region", "kill-stream-leader", "kill-edge", "kill-core", "random")
RANDOM_FAULTS = ("kill-region", "hang-region", "kill-edge", "kill-core")
REGION_FAULTS = ("kill-region", "hang-region", "partition-region", "kill-stream-leader")
# Seconds a restore may take (restarted processes becoming ready), for the default intent budget.
RESTORE_ALLOWANCE_S = 10.0
QUESTIONS = 5


class DrillError(Exception):
    """The drill cannot run. The message states what to do."""


@dataclass
class DrillOptions:
    fault: str
    target: str
    data_dir: Path
    with_edges: bool = False
    clients_per_region: int = 10
    interval_s: float = 0.2
    before_s: float = 5.0
    hold_s: float = 10.0
    after_s: float = 5.0
    settle_timeout_s: float = 60.0
    # None: enough for every client to send for the whole drill.
    max_intents: int | None = None
    progress: bool = True
    # For FAULT "random": how many faults, the seed, and the pause between them.
    random_faults: int = 0
    seed: int | None = None
    gap_s: float = 3.0


@dataclass
class Drill:
    options: DrillOptions
    info: dict
    history: History = field(default_factory=History)
    clients: list[tuple[str, ReconnectingClient]] = field(default_factory=list)
    phase: str = "before"
    # The fault being injected now, as (fault, target, with_edges).
    current: tuple[str, str, bool] = ("", "", False)
    faults_run: list[dict] = field(default_factory=list)
    fault_at: float = 0.0
    first_fault_at: float = 0.0
    restored_at: float = 0.0
    load_stopped_at: float = 0.0
    victims: list[int] = field(default_factory=list)
    # The nats-server that kill-stream-leader killed.
    killed_leader: str | None = None
    # Each edge's home region just before the current fault, by health URL.
    homes: dict[str, object] = field(default_factory=dict)
    detected_at: float | None = None
    rehomed_at: float | None = None
    converged_at: float | None = None
    # For partition-region: whether the cut region's replica and another
    # region's replica differed just before the heal, which shows that the
    # partition really stopped replication while both sides took writes.
    split_observed: bool | None = None


def load_cluster(data_dir: Path) -> dict:
    path = data_dir / "cluster.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DrillError(f"{path} not found: start the cluster with 'ama up --data-dir {data_dir}' first") from None


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None, timeout: float = 5.0) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def validate(options: DrillOptions, info: dict) -> None:
    if options.fault not in FAULTS:
        raise DrillError(f"unknown fault {options.fault!r}; choose one of {', '.join(FAULTS)}")
    if options.fault == "partition-region":
        if not info.get("netns"):
            raise DrillError(
                "partition-region needs a cluster whose regions have network namespaces: "
                "start one with 'ama up --netns --data-dir NEW_DIR' (Linux, as root)"
            )
        if options.with_edges:
            raise DrillError("partition-region cuts only the region's gateways; its edges keep serving, so --with-edges does not apply")
    if options.fault == "kill-stream-leader" and options.with_edges:
        raise DrillError("kill-stream-leader kills one nats-server; --with-edges does not apply")
    regions = list(info["regions"])
    if options.fault in REGION_FAULTS and options.target not in regions:
        raise DrillError(f"unknown region {options.target!r}; regions are {', '.join(regions)}")
    if options.fault == "kill-stream-leader":
        servers = len(info["regions"][options.target]["pids"]["nats"])
        if servers < plans.MAX_STREAM_REPLICAS:
            raise DrillError(
                f"{options.target} has {servers} nats-server(s), so its stream has no replica to take over: make a plan with "
                f"'ama plan --nats-per-region 3 > plan.json' and start it with 'ama up --plan plan.json' on a new data dir"
            )
    if options.fault == "kill-edge" and options.target not in regions and not options.target.startswith("ws://"):
        raise DrillError(f"TARGET of kill-edge is a region (its first edge is killed) or an edge URL; regions are {', '.join(regions)}")
    if options.fault == "kill-core" and options.target != "core":
        raise DrillError("TARGET of kill-core is 'core'")
    if options.fault == "random" and options.random_faults < 1:
        raise DrillError("--faults must be at least 1 for a random drill")


def schedule(options: DrillOptions, regions: list[str], can_partition: bool = False) -> list[tuple[str, str, bool]]:
    """Return the faults to inject, in order, as (fault, target, with_edges).

    A random drill draws partitions too when the cluster has namespaces.
    """
    if options.fault != "random":
        return [(options.fault, options.target, options.with_edges)]
    chooser = random.Random(options.seed)
    choices = RANDOM_FAULTS + (("partition-region",) if can_partition else ())
    faults = []
    for _ in range(options.random_faults):
        fault = chooser.choice(choices)
        target = "core" if fault == "kill-core" else chooser.choice(regions)
        faults.append((fault, target, fault in ("kill-region", "hang-region") and chooser.random() < 0.3))
    return faults


async def run_drill(options: DrillOptions) -> dict:
    info = load_cluster(options.data_dir)
    validate(options, info)
    drill = Drill(options, info)
    await _wait_for_homes(drill)
    room = http_json("POST", info["core"] + "/v1/rooms", {"title": f"Drill {options.fault} {options.target}"}, info["admin_token"])
    questions = await _start_audience(drill, room)
    stop = asyncio.Event()
    load = asyncio.create_task(_drive(drill, questions, stop))
    watcher = asyncio.create_task(_watch_detection(drill))
    try:
        await _phase(drill, "before", options.before_s)
        faults = schedule(options, list(info["regions"]), bool(info.get("netns")))
        for number, fault in enumerate(faults):
            drill.current = fault
            drill.homes = await _edge_homes(drill.info)
            _inject(drill)
            await _phase(drill, "during", options.hold_s)
            if fault[0] == "partition-region":
                drill.split_observed = await asyncio.to_thread(_split, drill, room["room"], fault[1])
            if options.progress:
                print(f"restoring after {fault[0]} {fault[1]}; the audience keeps voting", flush=True)
            await asyncio.to_thread(_restore, drill)
            drill.restored_at = time.monotonic()
            drill.faults_run.append({"fault": fault[0], "target": fault[1], "with_edges": fault[2]})
            await _phase(drill, "after", options.after_s if number == len(faults) - 1 else options.gap_s)
    finally:
        if drill.current[0] == "partition-region" and drill.restored_at < drill.fault_at:
            # The drill stopped while the region was cut off: heal it, or the
            # cluster would stay split after the drill.
            await asyncio.to_thread(_restore, drill)
        stop.set()
        await load
        watcher.cancel()
    drill.load_stopped_at = time.monotonic()
    await _settle(drill, room["room"])
    report = await _report(drill, room)
    for _, client in drill.clients:
        await client.stop()
    return report


async def _start_audience(drill: Drill, room: dict) -> list[str]:
    info = drill.info
    regions = list(info["regions"])
    for region in regions:
        urls = info["regions"][region]["edges"] + [url for other in regions if other != region for url in info["regions"][other]["edges"]]
        for index in range(drill.options.clients_per_region):
            joined = http_json("POST", f"{info['core']}/v1/rooms/{room['room']}/join", {"code": room["code"], "name": f"{region}-{index}"})
            client = ReconnectingClient(urls, joined["token"], backoff_base_s=0.1, backoff_cap_s=2.0)
            client.user = joined["user"]
            await client.start()
            drill.clients.append((region, client))
    asker = drill.clients[0][1]
    questions = []
    for number in range(QUESTIONS):
        question = str(uuid.uuid4())
        drill.history.sent(Sent(question, "ask", asker.user, question, 0, time.monotonic(), "before"))
        await asker.queue_intent({"type": "ask", "id": question, "text": f"Drill question {number + 1}"})
        questions.append(question)
    for _, client in drill.clients:
        await client.wait_for(lambda state: all(question in state.questions for question in questions), 30)
    return questions


def intent_budget(options: DrillOptions, regions: int) -> int:
    """Return the most votes the drill sends: ``max_intents``, or by default enough for every phase, with 20 % to spare.

    Each restore counts RESTORE_ALLOWANCE_S on top of the phases, since the
    load goes on while restarted processes become ready.
    """
    if options.max_intents is not None:
        return options.max_intents
    faults = max(1, options.random_faults)
    seconds = options.before_s + options.after_s + faults * (options.hold_s + RESTORE_ALLOWANCE_S) + (faults - 1) * options.gap_s
    return max(1, int(1.2 * regions * options.clients_per_region * seconds / options.interval_s))


async def _wait_for_homes(drill: Drill, timeout_s: float = 30.0) -> None:
    """Wait until every edge is back in its first home region, so that each drill starts from the steady state.

    After a region fault, edges move home only once the region has been
    healthy for 10 s. A drill started earlier would see that move as its
    own fault.
    """
    view = plans.View(plans.load(drill.options.data_dir / "plan.json"))
    first_homes = {view.edge_http_url(edge): edge["home_regions"][0] for region in view.plan["regions"] for edge in region["edges"]}
    deadline = time.monotonic() + timeout_s
    while True:
        homes = await _edge_homes(drill.info)
        away = [url for url, home in first_homes.items() if url in homes and homes[url] not in (home, _DOWN)]
        if not away or time.monotonic() > deadline:
            break
        if drill.options.progress:
            noun = "edge" if len(away) == 1 else "edges"
            print(f"waiting for {len(away)} {noun} to move back home before the drill starts", flush=True)
        await asyncio.sleep(1.0)


async def _edge_homes(info: dict) -> dict[str, object]:
    return {url: await _home_region(url) for region in info["regions"].values() for url in region.get("edge_http", [])}


async def _drive(drill: Drill, questions: list[str], stop: asyncio.Event) -> None:
    """Send votes from every client until ``stop`` or the intent budget runs out."""
    budget = intent_budget(drill.options, len(drill.info["regions"]))
    sent = 0
    while not stop.is_set() and sent < budget:
        for _, client in drill.clients:
            if sent >= budget:
                break
            question = random.choice(questions)
            value = random.choice((1, 1, 0, -1))
            intent_id = str(uuid.uuid4())
            drill.history.sent(Sent(intent_id, "vote", client.user, question, value, time.monotonic(), drill.phase))
            await client.queue_intent({"type": "vote", "id": intent_id, "question": question, "value": value})
            sent += 1
        _collect_acks(drill)
        try:
            await asyncio.wait_for(stop.wait(), drill.options.interval_s)
        except asyncio.TimeoutError:
            pass
    _collect_acks(drill)


def _collect_acks(drill: Drill) -> None:
    for region, client in drill.clients:
        for (intent_id, status), arrived_at in client.state.ack_times.items():
            entry = drill.history.intents.get(intent_id)
            if entry is None:
                continue
            drill.history.acked(intent_id, status, arrived_at)
            if drill.rehomed_at is None and drill.phase == "during" and entry.sent_at >= drill.fault_at and entry.accepted_at is not None and _affected(drill, region, client):
                drill.rehomed_at = entry.accepted_at


def _affected(drill: Drill, region: str, client: ReconnectingClient) -> bool:
    fault, target, _ = drill.current
    if fault == "kill-core":
        return True
    return region == target


async def _phase(drill: Drill, phase: str, seconds: float) -> None:
    drill.phase = phase
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
        if drill.options.progress:
            sent = len(drill.history.intents)
            acked = sum(1 for entry in drill.history.intents.values() if entry.accepted_at is not None)
            line = f"[{phase:<6}] {max(0.0, end - time.monotonic()):5.1f} s left  intents sent {sent}  acked {acked}"
            # On a terminal the line is rewritten in place; in a log, each goes on its own line.
            print("\r" + line + "   " if sys.stdout.isatty() else line, end="" if sys.stdout.isatty() else "\n", flush=True)
    if drill.options.progress and sys.stdout.isatty():
        print()


def _victims(drill: Drill) -> list[int]:
    """Return the process ids the current fault hits, from the latest cluster.json."""
    info = drill.info = load_cluster(drill.options.data_dir)
    fault, target, with_edges = drill.current
    if fault == "kill-core":
        return [info["core_pid"]]
    if fault == "kill-edge":
        if target.startswith("ws://"):
            for region in info["regions"].values():
                if target in region["edges"]:
                    return [region["pids"]["edges"][region["edges"].index(target)]]
            raise DrillError(f"no edge {target} in cluster.json")
        return info["regions"][target]["pids"]["edges"][:1]
    if fault == "partition-region":
        return []
    if fault == "kill-stream-leader":
        return [_stream_leader_pid(drill, target)]
    pids = info["regions"][target]["pids"]
    return pids["nats"] + pids["region"] + (pids["edges"] if with_edges else [])


def stream_leader(view: plans.View, region: str) -> str | None:
    """Return the name of the nats-server leading ``region``'s stream, from the region's monitor endpoints."""
    name = subjects.stream(region)
    for server in view.region(region)["nats"]:
        try:
            jsz = http_json("GET", view.monitor_url(server) + "/jsz?accounts=true&streams=true", timeout=1)
        except (OSError, ValueError):
            continue
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                leader = (stream.get("cluster") or {}).get("leader")
                if stream.get("name") == name and leader:
                    return leader
    return None


def _stream_leader_pid(drill: Drill, region: str) -> int:
    view = plans.View(plans.load(drill.options.data_dir / "plan.json"))
    servers = [server["name"] for server in view.region(region)["nats"]]
    leader = stream_leader(view, region)
    if leader not in servers:
        raise DrillError(f"no leader of {region}'s stream found in its servers' /jsz (got {leader!r}); check that the region is up")
    drill.killed_leader = leader
    return drill.info["regions"][region]["pids"]["nats"][servers.index(leader)]


def _layout(drill: Drill) -> netns.Layout:
    net = netns.layout(plans.load(drill.options.data_dir / "plan.json"))
    if net is None:
        raise DrillError(f"{drill.options.data_dir / 'plan.json'} has no network namespaces; start the cluster with 'ama up --netns'")
    return net


def _inject(drill: Drill) -> None:
    signum = signal.SIGSTOP if drill.current[0] == "hang-region" else signal.SIGKILL
    drill.victims = _victims(drill)
    drill.fault_at = time.monotonic()
    drill.first_fault_at = drill.first_fault_at or drill.fault_at
    if drill.current[0] == "partition-region":
        try:
            netns.partition(_layout(drill), drill.current[1])
        except netns.NetnsError as exc:
            raise DrillError(f"cutting {drill.current[1]} off failed: {exc}") from None
        return
    for pid in drill.victims:
        os.kill(pid, signum)


def _restore(drill: Drill) -> None:
    fault, target, with_edges = drill.current
    if fault == "partition-region":
        netns.heal(_layout(drill), target)
        return
    if fault == "hang-region":
        for pid in drill.victims:
            os.kill(pid, signal.SIGCONT)
        return
    target = "core" if fault == "kill-core" else target
    try:
        request_restart(drill.options.data_dir, target, with_edges=with_edges or fault == "kill-edge")
    except UpError as exc:
        raise DrillError(f"restoring {target} failed: {exc}") from None


async def _watch_detection(drill: Drill) -> None:
    """Note when the fault is first observed.

    Observed means: a client reconnects, an edge reports a new home region,
    a killed edge fails its health check, (for kill-core) the core does,
    (for partition-region) a NATS server of the cut region has lost a
    gateway connection, or (for kill-stream-leader) another server leads
    the stream.
    """
    core_url = drill.info["core"]
    while True:
        await asyncio.sleep(0.05)
        if not drill.fault_at or drill.detected_at is not None:
            continue
        drops = [moment for _, client in drill.clients for moment in client.dropped_at if moment >= drill.fault_at]
        if drops:
            # The client's own time of the drop: this loop may lag behind it
            # while health checks of a hung edge time out.
            drill.detected_at = min(drops)
            continue
        if drill.current[0] == "partition-region":
            if await asyncio.to_thread(_gateways_lost, drill, drill.current[1]):
                drill.detected_at = time.monotonic()
            continue
        if drill.current[0] == "kill-stream-leader":
            view = plans.View(plans.load(drill.options.data_dir / "plan.json"))
            leader = await asyncio.to_thread(stream_leader, view, drill.current[1])
            if leader is not None and leader != drill.killed_leader:
                drill.detected_at = time.monotonic()
            continue
        if drill.current[0] != "kill-core":
            core_down = False
        else:
            core_down = await _home_region(core_url) is _DOWN
        if core_down:
            drill.detected_at = time.monotonic()
            continue
        for url, home in drill.homes.items():
            now_home = await _home_region(url)
            if now_home != home and (now_home is not _DOWN or drill.current[0] == "kill-edge"):
                drill.detected_at = time.monotonic()
                break


_DOWN = object()


def _gateways_lost(drill: Drill, region: str) -> bool:
    """Tell whether a NATS server of ``region`` lacks an outbound gateway to another region (its /gatewayz)."""
    view = plans.View(plans.load(drill.options.data_dir / "plan.json"))
    others = set(view.region_names()) - {region}
    for server in view.region(region)["nats"]:
        try:
            gatewayz = http_json("GET", view.monitor_url(server) + "/gatewayz", timeout=0.5)
        except (OSError, ValueError):
            continue
        if not others <= set(gatewayz.get("outbound_gateways") or {}):
            return True
    return False


def _split(drill: Drill, room_id: str, region: str) -> bool:
    """Tell whether ``region``'s first region service shows another digest of the room than every other region's."""
    digests = _digests(drill.info, room_id)
    cut = digests.get(f"{region}/region-1")
    others = [digest for name, digest in digests.items() if name.endswith("/region-1") and not name.startswith(region + "/")]
    return cut is not None and bool(others) and all(digest["sha256"] != cut["sha256"] for digest in others)


async def _home_region(url: str):
    """Return the home region an edge's health check reports, or _DOWN when the check fails."""
    try:
        health = await asyncio.to_thread(http_json, "GET", url + "/healthz", None, None, 0.5)
    except (OSError, ValueError):
        return _DOWN
    return health.get("home_region")


async def _settle(drill: Drill, room_id: str) -> None:
    """Wait for every outbox to drain and every replica to show the same digest."""
    deadline = time.monotonic() + drill.options.settle_timeout_s
    while time.monotonic() < deadline:
        _collect_acks(drill)
        drained = all(not client.outbox for _, client in drill.clients)
        digests = await asyncio.to_thread(_digests, drill.info, room_id)
        if drained and len({digest["sha256"] for digest in digests.values()}) == 1:
            drill.converged_at = time.monotonic()
            return
        await asyncio.sleep(0.25)


def _replica_urls(info: dict) -> dict[str, str]:
    urls = {"core": info["core"]}
    for name, region in info["regions"].items():
        for index, url in enumerate(region.get("edge_http", [])):
            urls[f"{name}/edge-{index + 1}"] = url
        for index, url in enumerate(region.get("region_http", [])):
            urls[f"{name}/region-{index + 1}"] = url
    return urls


def _digests(info: dict, room_id: str) -> dict[str, dict]:
    digests = {}
    for name, url in _replica_urls(info).items():
        try:
            digests[name] = http_json("GET", f"{url}/v1/rooms/{room_id}/digest", timeout=2)
        except (OSError, ValueError):
            continue
    return digests


async def _report(drill: Drill, room: dict) -> dict:
    info = load_cluster(drill.options.data_dir)
    _collect_acks(drill)
    exports = {"core": http_json("GET", f"{info['core']}/v1/rooms/{room['room']}/export", token=room["host_token"])["questions"]}
    user_votes = {client.user: dict(client.state.mine) for _, client in drill.clients}
    views = {f"client {client.user} on {client.url}": list(client.state.questions.values()) for _, client in drill.clients}
    exports.update(views)
    verdict: Verdict = check(drill.history, exports, user_votes)
    digests = await asyncio.to_thread(_digests, info, room["room"])
    entries = drill.history.intents.values()
    since = lambda moment: None if moment is None or not drill.first_fault_at else round(moment - drill.first_fault_at, 3)
    report = {
        "fault": drill.options.fault,
        "target": drill.options.target,
        "with_edges": drill.options.with_edges,
        "faults": drill.faults_run,
        "seed": drill.options.seed,
        "room": room["room"],
        "intents_sent": len(drill.history.intents),
        "intents_acked": sum(1 for entry in entries if entry.accepted_at is not None),
        "intents_committed": sum(1 for entry in entries if entry.committed_at is not None),
        "lost": verdict.lost,
        "duplicated": verdict.duplicated,
        "unacknowledged": verdict.unacknowledged,
        "converged": drill.converged_at is not None and verdict.lost == 0 and verdict.duplicated == 0,
        "replicas_checked": sorted(digests),
        "detect_s": since(drill.detected_at),
        "rehome_s": since(drill.rehomed_at),
        "converge_s": None if drill.converged_at is None else round(drill.converged_at - drill.load_stopped_at, 3),
        "client_reconnects": sum(client.reconnects for _, client in drill.clients),
        "acked_during": _acked_during(drill),
        "split_observed": drill.split_observed,
        "p99_ms_before": _rounded(percentile(drill.history.latencies_ms("before"), 0.99)),
        "p99_ms_during": _rounded(percentile(drill.history.latencies_ms("during"), 0.99)),
        "p99_ms_after": _rounded(percentile(drill.history.latencies_ms("after"), 0.99)),
        "problems": verdict.problems[:20],
    }
    return report


def _acked_during(drill: Drill) -> dict[str, int]:
    """Count, per region of the sending clients, the intents sent while a fault was held that were accepted."""
    region_of = {client.user: region for region, client in drill.clients}
    counts = {region: 0 for region in drill.info["regions"]}
    for entry in drill.history.intents.values():
        if entry.phase == "during" and entry.accepted_at is not None and entry.user in region_of:
            counts[region_of[entry.user]] += 1
    return counts


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def format_report(report: dict) -> str:
    def show(value, unit: str = "") -> str:
        return "n/a" if value is None else f"{value}{unit}"

    faults = ", ".join(f"{fault['fault']} {fault['target']}" + (" with edges" if fault["with_edges"] else "") for fault in report["faults"])
    lines = [
        f"Drill {report['fault']} {report['target']}".rstrip() + (" (with edges)" if report["with_edges"] else "") + f" on room {report['room']}",
        f"  faults    {faults}" + ("" if report["seed"] is None else f" (seed {report['seed']})"),
        f"  intents   sent {report['intents_sent']}, acked {report['intents_acked']}, committed {report['intents_committed']}",
        f"  history   lost {report['lost']}, duplicated {report['duplicated']}, never committed {report['unacknowledged']}",
        f"  replicas  {'converged' if report['converged'] else 'NOT converged'} ({len(report['replicas_checked'])} checked)",
        # A partition moves no edge: the second figure is the cut side's first write.
        f"  timing    detect {show(report['detect_s'], ' s')}, "
        + ("first write on the cut side" if report["fault"] == "partition-region" else "re-home")
        + f" {show(report['rehome_s'], ' s')}, converge {show(report['converge_s'], ' s')} after the load stopped",
        f"  clients   {report['client_reconnects']} reconnects",
        "  during    accepted " + ", ".join(f"{region} {count}" for region, count in report["acked_during"].items()),
        f"  p99 ack   before {show(report['p99_ms_before'], ' ms')}, during {show(report['p99_ms_during'], ' ms')}, after {show(report['p99_ms_after'], ' ms')}",
    ]
    if report["split_observed"] is not None:
        lines.append(f"  partition {'replicas on the two sides differed before the heal' if report['split_observed'] else 'NO difference between the sides was seen before the heal'}")
    lines += [f"  problem: {problem}" for problem in report["problems"]]
    return "\n".join(lines)


def passed(report: dict) -> bool:
    return report["lost"] == 0 and report["duplicated"] == 0 and report["converged"] and report["unacknowledged"] == 0
