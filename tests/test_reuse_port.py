"""Edge processes sharing one WebSocket port with SO_REUSEPORT, on a real cluster started with ``ama up``.

Each process is its own edge node with its own NATS connection, so sockets
the kernel hands to different processes still see each other's votes.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from ama.client import AmaClient
from ama.health import TIMEOUT_S
from ama.plan import View, default_plan
from ama.routing import Routing
from tests.harness import ClusterApi, UpProcess

pytestmark = pytest.mark.cluster

WAIT_S = 10.0
SOCKETS = 24


@pytest.fixture(scope="module")
def shared_port_cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("reuse-port")
    (base / "plan.json").write_text(json.dumps(default_plan(processes_per_edge=2)))
    process = UpProcess(base / "data", ["--plan", str(base / "plan.json")])
    try:
        process.start()
        yield ClusterApi(process.info)
    finally:
        process.stop()


async def test_shared_port_spreads_sockets_and_votes(shared_port_cluster):
    cluster = shared_port_cluster
    region = cluster.regions()[0]
    url = cluster.edge(region, 0)
    assert cluster.edge(region, 1) == url

    room = cluster.create_room("Shared port")
    host = AmaClient(url, room["host_token"])
    await host.connect()
    clients = [AmaClient(url, cluster.join(room, f"user-{i}")["token"]) for i in range(SOCKETS)]
    try:
        await asyncio.gather(*(client.connect() for client in clients))
        edges = {client.state.welcome["edge"] for client in [host, *clients]}
        # The kernel picks a listener per connection by a hash of its addresses;
        # 25 sockets all landing on one of two processes is a 2^-24 chance.
        assert edges == {f"{region}-edge-1-p1", f"{region}-edge-1-p2"}

        question = await host.ask("Do votes cross edge processes?")
        for client in clients:
            await client.wait_for(lambda state: question in state.questions, WAIT_S)
        await asyncio.gather(*(client.vote(question, 1) for client in clients))
        for client in [host, *clients]:
            await client.wait_for(lambda state: state.questions[question]["up"] == SOCKETS, WAIT_S)
    finally:
        await asyncio.gather(*(client.close() for client in [host, *clients]))



def located_edges(view: View, dead: set[str]) -> list[str]:
    """Return the edge URLs /v1/locate gives when the edge processes in ``dead`` send no heartbeats."""
    routing = Routing(view, view.region_names(), None, [])
    now = time.monotonic()
    routing.board.started_at = now - 2 * TIMEOUT_S
    for region in view.plan["regions"]:
        routing.board.record("region", region["region_services"][0]["name"], region["name"], now)
        for edge in region["edges"]:
            if edge["name"] not in dead:
                routing.board.record("edge", edge["name"], region["name"], now)
    return routing.locate(None)["edges"]


def test_locate_lists_a_shared_port_once():
    view = View(default_plan(processes_per_edge=2))
    edges = located_edges(view, set())
    assert len(edges) == len(set(edges)) == 3


def test_locate_shared_port_one_process_alive():
    view = View(default_plan(processes_per_edge=2))
    first, second = (edge["name"] for edge in view.plan["regions"][0]["edges"])
    healthy = located_edges(view, set())
    assert located_edges(view, {first}) == healthy
    assert located_edges(view, {first, second})[-1] == healthy[0]
