"""Faults with real processes and real signals: a region killed or hung, an edge killed or stopped.

One cluster serves the module; each test restores what it broke with
``ama restart`` (or SIGCONT) before it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import websockets

from ama.client import AmaClient, ReconnectingClient
from ama.plan import default_plan
from ama.tokens import Signer
from tests.harness import ClusterApi, UpProcess, pid_alive

pytestmark = pytest.mark.cluster

WAIT_S = 10.0


@pytest.fixture(scope="module")
def failover(tmp_path_factory):
    process = UpProcess(tmp_path_factory.mktemp("failover") / "data")
    try:
        process.start()
        yield process
    finally:
        process.stop()


def restart(process: UpProcess, target: str, with_edges: bool = False) -> dict:
    """Run ``ama restart`` against the module's cluster and reload cluster.json."""
    argv = [sys.executable, "-m", "ama.cli", "restart", target, "--data-dir", str(process.data_dir)]
    if with_edges:
        argv.append("--with-edges")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    process.info = json.loads((process.data_dir / "cluster.json").read_text())
    return process.info


def region_pids(info: dict, region: str) -> list[int]:
    pids = info["regions"][region]["pids"]
    return pids["nats"] + pids["region"]


async def joined(cluster: ClusterApi, room: dict, region: str, name: str) -> AmaClient:
    client = AmaClient(cluster.edge(region), cluster.join(room, name)["token"])
    await client.connect()
    return client


async def first_accepted_after(client: AmaClient, question: str, deadline_s: float) -> float:
    """Vote until a vote is accepted; return the seconds that took."""
    started = time.monotonic()
    value = 1
    while time.monotonic() - started < deadline_s:
        intent = await client.vote(question, value)
        value = 1 - value
        try:
            await client.wait_for(lambda state: client.acked(intent, "accepted"), 0.25)
            return time.monotonic() - started
        except TimeoutError:
            continue
    raise AssertionError(f"no vote was accepted within {deadline_s} s")


@pytest.mark.parametrize(("fault", "signum", "target_s"), [("kill", signal.SIGKILL, 2.0), ("hang", signal.SIGSTOP, 5.0)])
async def test_region_fault_rehomes_edges(failover, fault, signum, target_s):
    cluster = ClusterApi(failover.info)
    room = cluster.create_room(f"Region {fault}")
    home, other = cluster.regions()[0], cluster.regions()[1]
    writer = await joined(cluster, room, home, "writer")
    reader = await joined(cluster, room, other, "reader")
    victims = region_pids(failover.info, home)
    try:
        question = await writer.ask("Does this room outlive its home region?")
        await reader.wait_for(lambda state: question in state.questions, WAIT_S)

        for pid in victims:
            os.kill(pid, signum)
        rehome_s = await first_accepted_after(writer, question, target_s * 3)
        assert rehome_s <= target_s, f"writes resumed after {rehome_s:.2f} s"
        assert writer.close_code is None

        after = await writer.ask(f"Asked after the {fault}")
        await reader.wait_for(lambda state: after in state.questions, WAIT_S)
        await writer.wait_for(lambda state: writer.acked(after), 30)
    finally:
        if signum == signal.SIGSTOP:
            for pid in victims:
                os.kill(pid, signal.SIGCONT)
        await writer.close()
        await reader.close()
    if signum == signal.SIGKILL:
        info = restart(failover, home)
        assert set(region_pids(info, home)).isdisjoint(victims)
        assert all(pid_alive(pid) for pid in region_pids(info, home))


async def test_killed_edge_clients_reconnect_and_resend(failover):
    cluster = ClusterApi(failover.info)
    room = cluster.create_room("Edge kill")
    regions = cluster.regions()
    victim_region = regions[2]
    urls = [cluster.edge(victim_region)] + [cluster.edge(region) for region in regions[:2]]
    clients = [ReconnectingClient(urls, cluster.join(room, f"c{i}")["token"], backoff_base_s=0.05, backoff_cap_s=0.5) for i in range(5)]
    watcher = await joined(cluster, room, regions[0], "watcher")
    try:
        for client in clients:
            await client.start()
        question = await clients[0].ask("Who survives an edge?")
        await watcher.wait_for(lambda state: question in state.questions, WAIT_S)

        os.kill(failover.info["regions"][victim_region]["pids"]["edges"][0], signal.SIGKILL)
        intents = [await client.vote(question, 1) for client in clients[1:]]
        for client, intent in zip(clients[1:], intents):
            await client.wait_for(lambda state: client.acked(intent), 30)
        await watcher.wait_for(lambda state: state.questions[question]["up"] == 4, WAIT_S)
        assert all(client.reconnects >= 1 for client in clients)
        assert all(client.url != urls[0] for client in clients)
    finally:
        for client in clients:
            await client.stop()
        await watcher.close()
    restart(failover, victim_region, with_edges=True)


async def test_sigterm_edge_closes_with_1012(failover):
    cluster = ClusterApi(failover.info)
    room = cluster.create_room("Graceful stop")
    region = cluster.regions()[1]
    clients = [await joined(cluster, room, region, f"g{i}") for i in range(3)]
    pid = failover.info["regions"][region]["pids"]["edges"][0]
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    for client in clients:
        await client.wait_for(lambda state: client.close_code is not None, WAIT_S)
    assert {client.close_code for client in clients} == {1012}
    with pytest.raises(OSError):
        await websockets.connect(cluster.edge(region), open_timeout=2)
    while pid_alive(pid) and time.monotonic() - started < 15:
        await asyncio.sleep(0.1)
    assert not pid_alive(pid)
    assert time.monotonic() - started < 15
    restart(failover, region, with_edges=True)


async def test_reconnect_storm_spares_surviving_edge(tmp_path):
    """2,000 clients of a killed edge arrive at the next one; it answers 1013 to the excess and stays up.

    The surviving edge admits 150 new sockets per second (burst 50) in
    this plan, so the storm exceeds its rate on this machine too.
    """
    plan = default_plan()
    survivor_edge = plan["regions"][1]["edges"][0]
    survivor_edge.update({"admit_rate_per_s": 150.0, "admit_burst": 50})
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    process = UpProcess(tmp_path / "data", ["--plan", str(plan_file)])
    cluster = ClusterApi(process.start())
    room = cluster.create_room("Storm")
    regions = cluster.regions()
    victim, survivor = regions[0], regions[1]
    signer = Signer.load_or_create(process.data_dir / "core" / "signing-key.json")
    urls = [cluster.edge(victim), cluster.edge(survivor)]
    clients = [
        ReconnectingClient(urls, signer.issue(f"u_storm{i}", room["room"], "audience", f"s{i}"), backoff_base_s=0.2, backoff_cap_s=5.0)
        for i in range(2000)
    ]
    try:
        for start in range(0, len(clients), 200):
            await asyncio.gather(*(client.start() for client in clients[start:start + 200]))
        os.kill(process.info["regions"][victim]["pids"]["edges"][0], signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(client.connected.is_set() and client.url == urls[1] for client in clients):
            await asyncio.sleep(0.5)
        assert all(client.url == urls[1] for client in clients)
        assert all(client.connected.is_set() for client in clients)
        assert sum(client.refused_try_later for client in clients) > 0
        assert pid_alive(process.info["regions"][survivor]["pids"]["edges"][0])
    finally:
        await asyncio.gather(*(client.stop() for client in clients))
        process.stop()


async def test_room_never_opens_without_a_sync(failover):
    """With the core down, a room no region has loaded is refused with 1011, and opens once the core is back."""
    cluster = ClusterApi(failover.info)
    room = cluster.create_room("Opened only after a sync")
    region = cluster.regions()[1]
    os.kill(failover.info["core_pid"], signal.SIGKILL)
    try:
        refused = AmaClient(cluster.edge(region), room["host_token"])
        with pytest.raises(websockets.ConnectionClosed):
            await refused.connect()
        assert refused.close_code == 1011
    finally:
        restart(failover, "core")
    opened = AmaClient(cluster.edge(region), room["host_token"])
    await opened.connect()
    try:
        assert opened.state.room["title"] == "Opened only after a sync"
    finally:
        await opened.close()
