"""Idle rooms leave the memory of region services and the core, and come back from the store when used again."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from ama.client import AmaClient
from ama.plan import PlanError, default_plan, validate
from region.service import evictable
from tests.harness import ClusterApi, UpProcess, http_json

EVICT_AFTER_S = 3.0
WAIT_S = 10.0


def test_evictable_needs_idle_time():
    assert not evictable(idle_s=2.0, evict_after_s=3.0, state_vector={1: 5}, watermark={1: 5})
    assert evictable(idle_s=3.0, evict_after_s=3.0, state_vector={1: 5}, watermark={1: 5})


def test_evictable_needs_the_core_to_cover_the_replica():
    assert not evictable(idle_s=10.0, evict_after_s=3.0, state_vector={1: 5, 2: 1}, watermark={1: 5})
    assert not evictable(idle_s=10.0, evict_after_s=3.0, state_vector={1: 6}, watermark={1: 5})
    assert evictable(idle_s=10.0, evict_after_s=3.0, state_vector={1: 5}, watermark={1: 7, 2: 3})


def test_evictable_keeps_replicas_without_a_watermark():
    assert not evictable(idle_s=10.0, evict_after_s=3.0, state_vector={}, watermark=None)


@pytest.mark.parametrize("value", [0, -1, "60", True])
def test_plan_rejects_invalid_eviction_time(value):
    plan = default_plan()
    plan["evict_idle_rooms_after_s"] = value
    with pytest.raises(PlanError, match="evict_idle_rooms_after_s must be a positive number"):
        validate(plan)


@pytest.fixture(scope="module")
def evicting(tmp_path_factory):
    directory = tmp_path_factory.mktemp("evicting")
    plan = default_plan()
    plan["evict_idle_rooms_after_s"] = EVICT_AFTER_S
    for region in plan["regions"]:
        for edge in region["edges"]:
            edge["room_idle_s"] = 2.0
    (directory / "plan.json").write_text(json.dumps(plan))
    process = UpProcess(directory / "data", ["--plan", str(directory / "plan.json")])
    try:
        process.start()
        yield process
    finally:
        process.stop()


def room_counts(info: dict) -> dict[str, int]:
    counts = {"core": http_json("GET", info["core"] + "/healthz")[1]["rooms"]}
    for name, region in info["regions"].items():
        counts[name] = http_json("GET", region["region_http"][0] + "/healthz")[1]["rooms"]
    return counts


async def vote_from(cluster: ClusterApi, room: dict, region: str, name: str, question: str | None) -> tuple[AmaClient, str]:
    joined = cluster.join(room, name)
    client = AmaClient(cluster.edge(region), joined["token"])
    await client.connect()
    if question is None:
        question = await client.ask("Does an idle room come back whole?")
        await client.wait_for(lambda state: client.acked(question), WAIT_S)
    intent = await client.vote(question, 1)
    await client.wait_for(lambda state: client.acked(intent), WAIT_S)
    return client, question


@pytest.mark.cluster
async def test_idle_room_is_evicted_and_loaded_again(evicting):
    cluster = ClusterApi(evicting.info)
    room = cluster.create_room("Eviction")
    first, question = await vote_from(cluster, room, "us-east", "first", None)
    await first.close()

    # The edge closes the room after 2 s without sockets; then the region
    # services and the core drop it after 3 s without use.
    deadline = time.monotonic() + 30
    while any(room_counts(evicting.info).values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert room_counts(evicting.info) == {"core": 0, "us-east": 0, "eu-central": 0, "ap-southeast": 0}

    second, _ = await vote_from(cluster, room, "eu-central", "second", question)
    try:
        await second.wait_for(lambda state: state.questions[question]["up"] == 2, WAIT_S)
        assert cluster.export(room)["questions"][0]["up"] == 2
    finally:
        await second.close()
