"""Hostile input against a live edge over real sockets, while honest clients keep being served.

A corpus of bad frames, tokens and handshakes, plus a hypothesis fuzzer of
random frames. Throughout, 100 honest clients watch a question whose count
keeps changing; at the end every one of them has the final count, the edge
process is alive, and nothing hostile reached the core's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import base64
import json
import os
import socket
import struct
import time
import urllib.parse
import uuid

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ama.client import AmaClient
from ama.plan import default_plan
from ama.tokens import Signer
from tests.harness import ClusterApi, UpProcess, http_json, pid_alive

pytestmark = pytest.mark.cluster

WAIT_S = 10.0
FUZZ_REGION = 0
LIMITED_REGION = 1


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A cluster whose first edge has loose intent limits (for the fuzzer); the others keep the defaults."""
    base = tmp_path_factory.mktemp("hostile")
    plan = default_plan()
    plan["regions"][FUZZ_REGION]["edges"][0].update({"intent_rate_per_s": 100000.0, "intent_burst": 100000, "user_intent_rate_per_s": 100000.0, "user_intent_burst": 100000})
    plan["regions"][LIMITED_REGION]["edges"][0].update({"max_sockets_per_address": 5})
    (base / "plan.json").write_text(json.dumps(plan))
    process = UpProcess(base / "data", ["--plan", str(base / "plan.json"), "--trusted-proxy", "127.0.0.0/8"])
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def api(hostile) -> ClusterApi:
    return ClusterApi(hostile.info)


@pytest.fixture(scope="module")
def room(api):
    return api.create_room("Hostile input")


@pytest.fixture(scope="module")
def signer(hostile) -> Signer:
    return Signer.load_or_create(hostile.data_dir / "core" / "signing-key.json")


def region_name(api: ClusterApi, index: int) -> str:
    return api.regions()[index]


async def hello_socket(url: str, token: str, **options):
    websocket = await websockets.connect(url, max_size=None, open_timeout=5, **options)
    await websocket.send(json.dumps({"type": "hello", "token": token}))
    frames = [json.loads(await websocket.recv()), json.loads(await websocket.recv())]
    assert frames[0]["type"] == "welcome", frames
    return websocket


async def next_frame_of(websocket, kinds: set[str], timeout: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(websocket.recv(), max(0.1, deadline - time.monotonic())))
        if frame["type"] in kinds:
            return frame


class Audience:
    """100 honest clients watching one question while a voter keeps changing its count."""

    def __init__(self, api: ClusterApi, room: dict, signer: Signer):
        self.api, self.room, self.signer = api, room, signer
        self.watchers: list[AmaClient] = []
        self.voter: AmaClient | None = None
        self.question = ""

    async def start(self) -> None:
        regions = self.api.regions()
        for index in range(100):
            token = self.signer.issue(f"u_{index:016x}", self.room["room"], "audience", f"honest {index}")
            watcher = AmaClient(self.api.edge(regions[index % 3]), token)
            await watcher.connect()
            self.watchers.append(watcher)
        self.voter = AmaClient(self.api.edge(regions[2]), self.room["host_token"])
        await self.voter.connect()
        self.question = await self.voter.ask("Do honest users notice the attack?")
        for watcher in self.watchers:
            await watcher.wait_for(lambda state: self.question in state.questions, WAIT_S)

    async def vote(self, value: int) -> None:
        await self.voter.vote(self.question, value)

    async def check_everyone_sees(self, up: int) -> None:
        for watcher in self.watchers:
            await watcher.wait_for(lambda state: state.questions[self.question]["up"] == up, WAIT_S)
            assert watcher.close_code is None

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in [*self.watchers, self.voter] if client is not None))


def raw_upgrade(url: str, extra: bytes = b"") -> socket.socket:
    """Open a WebSocket by hand, for frames a well-behaved library refuses to send."""
    parsed = urllib.parse.urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /v1/ws HTTP/1.1\r\nHost: " + parsed.netloc.encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return header + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


def read_close_code(sock: socket.socket) -> int | None:
    data = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
        index = 0
        while index + 2 <= len(data):
            opcode, length = data[index] & 0x0F, data[index + 1] & 0x7F
            offset = index + 2
            if length == 126:
                length, offset = struct.unpack("!H", data[offset:offset + 2])[0], offset + 2
            if offset + length > len(data):
                break
            if opcode == 0x8:
                return struct.unpack("!H", data[offset:offset + 2])[0]
            index = offset + length
    return None


async def test_hostile_corpus_spares_honest_clients(hostile, api, room, signer):
    audience = Audience(api, room, signer)
    await audience.start()
    edge = api.edge(region_name(api, FUZZ_REGION))
    edge_pid = hostile.info["regions"][region_name(api, FUZZ_REGION)]["pids"]["edges"][0]
    attacker_token = signer.issue("u_00000000deadbeef", room["room"], "audience", "attacker")
    try:
        attacker = await hello_socket(edge, attacker_token)
        cases = [
            ("{not json", "invalid_json"),
            ("[]", "invalid_frame"),
            ("null", "invalid_frame"),
            ('{"type": "launch"}', "invalid_frame"),
            ('{"id": "x"}', "invalid_frame"),
            (json.dumps({"type": "vote", "id": str(uuid.uuid4()), "question": str(uuid.uuid4()), "value": 2}), "invalid_frame"),
            (json.dumps({"type": "vote", "id": str(uuid.uuid4()), "question": str(uuid.uuid4()), "value": "1"}), "invalid_frame"),
            (json.dumps({"type": "vote", "id": str(uuid.uuid4()), "question": str(uuid.uuid4()), "value": 1}), "unknown_question"),
            (json.dumps({"type": "vote", "id": "1; DROP TABLE", "question": str(uuid.uuid4()), "value": 1}), "invalid_id"),
            (json.dumps({"type": "ask", "id": str(uuid.uuid4()), "text": "x" * 5000}), "text_too_long"),
            (json.dumps({"type": "ask", "id": str(uuid.uuid4()), "text": "bell \u0007 here"}), "invalid_text"),
            ('{"type": "ask", "id": "' + str(uuid.uuid4()) + '", "text": "lone \\ud800 surrogate"}', "invalid_json"),
            (json.dumps({"type": "ask", "id": str(uuid.uuid4()), "text": "   "}), "empty_text"),
            (json.dumps({"type": "ask", "id": str(uuid.uuid4()), "text": "hi", "extra": 1}), "invalid_frame"),
            (json.dumps({"type": "moderate", "id": str(uuid.uuid4()), "question": audience.question, "action": "hide"}), "forbidden"),
            (json.dumps({"type": "settings", "id": str(uuid.uuid4()), "changes": {"questions_open": False}}), "forbidden"),
            (json.dumps({"type": "ban", "id": str(uuid.uuid4()), "user": "u_0000000000000001"}), "forbidden"),
            (json.dumps({"type": "hello", "token": attacker_token}), "already_joined"),
            ("[" * 10000 + "]" * 10000, "invalid_frame"),
            (json.dumps({"type": "vote", "id": str(uuid.uuid4()), "question": str(uuid.uuid4()), "value": 1, "deep": [[[[[[]]]]]]}), "invalid_frame"),
        ]
        for index, (frame, code) in enumerate(cases):
            await attacker.send(frame)
            error = await next_frame_of(attacker, {"error"})
            assert error["code"] == code, (index, frame[:80], error)
            assert error["message"]
            await audience.vote(index % 2)
        await attacker.send(b"\x00\x01binary")
        assert (await next_frame_of(attacker, {"error"}))["code"] == "binary_frame"

        await attacker.send(json.dumps({"type": "ask", "id": str(uuid.uuid4()), "text": "y" * 70_000}))
        with pytest.raises(websockets.ConnectionClosed):
            await attacker.recv()
        assert attacker.close_code == 1009

        sock = await asyncio.to_thread(raw_upgrade, edge)
        sock.sendall(masked_frame(0x1, json.dumps({"type": "hello", "token": attacker_token}).encode()))
        sock.sendall(masked_frame(0x1, b"\xff\xfe not utf-8"))
        assert await asyncio.to_thread(read_close_code, sock) == 1007
        sock.close()

        parsed = urllib.parse.urlparse(edge)
        garbage = socket.create_connection((parsed.hostname, parsed.port), timeout=5)
        garbage.sendall(os.urandom(2048) + b"\r\n\r\n")
        garbage.settimeout(5)
        try:
            garbage.recv(1024)
        except OSError:
            pass
        garbage.close()

        await audience.vote(1)
        await audience.check_everyone_sees(1)
        assert pid_alive(edge_pid)
    finally:
        await audience.close()

    exported = api.export(room)["questions"]
    assert [view["id"] for view in exported] == [audience.question]


async def test_tokens_forged_expired_and_garbage_close_1008(api, room, signer):
    edge = api.edge(region_name(api, LIMITED_REGION))
    good = signer.issue("u_0000000000000abc", room["room"], "audience", "x")
    header, payload, signature = good.split(".")
    forged_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_claims["role"] = "host"
    forged = ".".join([header, base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).decode().rstrip("="), signature])
    expired = signer.issue("u_0000000000000abc", room["room"], "audience", "x", now=time.time() - 100_000)
    other_key = Signer.load_or_create(room_path := (signer.path.parent / f"other-{uuid.uuid4().hex}.json"))
    unknown_key = other_key.issue("u_0000000000000abc", room["room"], "host", "x")
    room_path.unlink()
    for token, code in [(forged, "invalid_token"), (expired, "token_expired"), (unknown_key, "invalid_token"), ("garbage", "invalid_token"), ("", "invalid_token")]:
        client = AmaClient(edge, token)
        with pytest.raises(websockets.ConnectionClosed):
            await client.connect()
        assert client.close_code == 1008, token[:20]
        assert client.state.errors[0]["code"] == code


async def test_no_hello_within_timeout_closes_1008(api):
    websocket = await websockets.connect(api.edge(region_name(api, LIMITED_REGION)), open_timeout=5)
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(websocket.recv(), 15)
    assert websocket.close_code == 1008


async def test_burst_is_rate_limited_but_keeps_its_socket(api, room, signer):
    # What an edge reads after a stall: 400 frames of one socket at once.
    token = signer.issue("u_00000000b0457000", room["room"], "audience", "burst")
    websocket = await hello_socket(api.edge(region_name(api, LIMITED_REGION)), token)
    question = str(uuid.uuid4())
    for _ in range(400):
        await websocket.send(json.dumps({"type": "vote", "id": str(uuid.uuid4()), "question": question, "value": 1}))
    codes = []
    with contextlib.suppress(asyncio.TimeoutError):
        while True:
            frame = json.loads(await asyncio.wait_for(websocket.recv(), 2))
            if frame["type"] == "error":
                codes.append(frame["code"])
    # One error for the whole burst, not one per dropped frame, and the socket stays open.
    assert codes.count("rate_limited") == 1
    await websocket.ping()
    await websocket.close()


async def test_client_resends_rate_limited_intents_until_committed(api, room, signer):
    token = signer.issue("u_00000000b0457001", room["room"], "audience", "eager")
    client = AmaClient(api.edge(region_name(api, LIMITED_REGION)), token)
    await client.connect()
    try:
        ask = await client.ask("A question that gets many votes at once")
        await client.wait_for(lambda state: client.acked(ask), WAIT_S)
        # 45 intents at once: over the socket's burst of 30.
        intents = [await client.vote(ask, (1, -1, 0)[number % 3]) for number in range(45)]
        await client.wait_for(lambda state: all(client.acked(intent) for intent in intents), 30)
        assert any(error["code"] == "rate_limited" for error in client.state.errors)
        assert not client.outbox
        assert client.close_code is None
    finally:
        await client.close()


async def test_sustained_flood_gets_rate_limited_then_closed(api, room, signer):
    token = signer.issue("u_00000000f100d000", room["room"], "audience", "flooder")
    websocket = await hello_socket(api.edge(region_name(api, LIMITED_REGION)), token)
    question = str(uuid.uuid4())
    codes = []

    async def read() -> None:
        while True:
            frame = json.loads(await websocket.recv())
            if frame["type"] == "error":
                codes.append(frame["code"])

    reader = asyncio.create_task(read())
    started = time.monotonic()
    try:
        # Bounded: at most 20 s, 100 frames every 50 ms, until the edge closes.
        while time.monotonic() - started < 20:
            for _ in range(100):
                await websocket.send(json.dumps({"type": "vote", "id": str(uuid.uuid4()), "question": question, "value": 1}))
            await asyncio.sleep(0.05)
    except websockets.ConnectionClosed:
        pass
    with contextlib.suppress(websockets.ConnectionClosed):
        await asyncio.wait_for(reader, WAIT_S)
    assert websocket.close_code == 4029
    assert 5 <= time.monotonic() - started < 20
    # About one error per second of flooding.
    assert 3 <= codes.count("rate_limited") <= 10, codes


async def test_origin_allow_list(api, room, hostile):
    edge = api.edge(region_name(api, LIMITED_REGION))
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(edge, origin="http://evil.example", open_timeout=5)
    assert refused.value.response.status_code == 403
    own_page = hostile.info["regions"][region_name(api, FUZZ_REGION)]["edge_http"][0]
    websocket = await websockets.connect(edge, origin=own_page, open_timeout=5)
    await websocket.close()


async def test_socket_cap_per_forwarded_address(api):
    edge = api.edge(region_name(api, LIMITED_REGION))
    headers = {"X-Forwarded-For": "203.0.113.77"}
    sockets = [await websockets.connect(edge, additional_headers=headers, open_timeout=5) for _ in range(5)]
    try:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(edge, additional_headers=headers, open_timeout=5)
        assert refused.value.response.status_code == 429
        other = await websockets.connect(edge, additional_headers={"X-Forwarded-For": "203.0.113.78"}, open_timeout=5)
        await other.close()
    finally:
        for websocket in sockets:
            await websocket.close()


def test_join_rate_limited_per_address(api, room):
    headers = {"X-Forwarded-For": "198.51.100.23"}
    statuses = [http_json("POST", f"{api.core}/v1/rooms/{room['room']}/join", {"code": room["code"], "name": "j"}, headers=headers)[0] for _ in range(25)]
    assert statuses[:20] == [200] * 20
    assert 429 in statuses[20:]


async def test_ban_stops_writes_on_every_edge(api, room):
    host = AmaClient(api.edge(region_name(api, 0)), room["host_token"])
    await host.connect()
    joined = api.join(room, "troll")
    trolls = []
    try:
        for region in api.regions():
            troll = AmaClient(api.edge(region), joined["token"])
            await troll.connect()
            trolls.append(troll)
        await host.send_intent({"type": "ban", "user": joined["user"], "banned": True})
        await asyncio.sleep(1.0)
        for troll in trolls:
            intent = await troll.ask("Can I still post?")
            await troll.wait_for(lambda state: any(error.get("id") == intent for error in state.errors), WAIT_S)
            assert troll.state.errors[-1]["code"] == "banned"
        status, body = http_json("POST", f"{api.core}/v1/rooms/{room['room']}/join", {"code": room["code"], "name": "troll", "previous_token": joined["token"]})
        assert status == 403
        assert body["error"]["code"] == "banned"
    finally:
        for client in [host, *trolls]:
            await client.close()


def test_moderator_code_grants_moderator_role(api, room):
    status, issued = http_json("POST", f"{api.core}/v1/rooms/{room['room']}/moderator-code", {}, token=room["host_token"])
    assert status == 201
    joined = api.join({"room": room["room"], "code": issued["code"]}, "mod")
    assert joined["role"] == "moderator"
    audience = api.join(room, "aud")
    status, body = http_json("POST", f"{api.core}/v1/rooms/{room['room']}/moderator-code", {}, token=audience["token"])
    assert status == 403


async def test_key_rotation_keeps_edges_verifying(api, room, hostile):
    status, rotated = http_json("POST", f"{api.core}/v1/admin/rotate-key", {}, token=hostile.info["admin_token"])
    assert status == 200
    assert len(rotated["keys"]) >= 2
    fresh = api.join(room, "after rotation")
    client = AmaClient(api.edge(region_name(api, 2)), fresh["token"])
    await client.connect()
    assert client.state.welcome["user"] == fresh["user"]
    await client.close()
    old = AmaClient(api.edge(region_name(api, 2)), room["host_token"])
    await old.connect()
    assert old.state.welcome["role"] == "host"
    await old.close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
FRAMES = st.one_of(
    st.dictionaries(st.sampled_from(["type", "id", "question", "value", "text", "action", "changes", "token", "user", "anonymous"]), JSON_VALUES, max_size=6),
    st.fixed_dictionaries({"type": st.sampled_from(["ask", "vote", "moderate", "settings", "ban", "hello", "nope"])}, optional={
        "id": st.one_of(st.uuids().map(str), st.text(max_size=40)),
        "question": st.one_of(st.uuids().map(str), st.text(max_size=40)),
        "value": JSON_VALUES,
        "text": st.text(max_size=400),
        "action": st.text(max_size=10),
        "changes": JSON_VALUES,
    }),
)


def test_fuzzed_frames_get_errors_and_spare_the_edge(hostile, api, room, signer):
    edge = api.edge(region_name(api, FUZZ_REGION))
    edge_pid = hostile.info["regions"][region_name(api, FUZZ_REGION)]["pids"]["edges"][0]
    token = signer.issue("u_00000000000f0220", room["room"], "audience", "fuzzer")
    loop = asyncio.new_event_loop()
    websocket = loop.run_until_complete(hello_socket(edge, token))

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(FRAMES)
    def send_one(frame):
        reply = loop.run_until_complete(_send_and_read(websocket, json.dumps(frame)))
        assert reply["type"] in ("error", "ack"), reply
        if reply["type"] == "error":
            assert reply["code"] and reply["message"]

    try:
        send_one()
    finally:
        loop.run_until_complete(websocket.close())
        loop.close()
    assert pid_alive(edge_pid)
    exported = {view["text"] for view in api.export(room)["questions"]}
    assert all(len(text) <= 300 for text in exported)


async def _send_and_read(websocket, data: str) -> dict:
    await websocket.send(data)
    return await next_frame_of(websocket, {"error", "ack"})


async def test_expired_token_stops_writes_on_live_socket(api, room, signer):
    """A socket joined just before its token expired gets token_expired on its writes once it has."""
    from ama.tokens import CLOCK_SKEW_S, DEFAULT_TTL_S

    # Expires CLOCK_SKEW_S - 2 seconds ago: hello still passes within the
    # allowed clock skew, and two seconds later writes no longer do.
    issued_at = time.time() - DEFAULT_TTL_S - CLOCK_SKEW_S + 2
    token = signer.issue("u_0000000000e0e0e0", room["room"], "audience", "late", now=issued_at)
    client = AmaClient(api.edge(region_name(api, LIMITED_REGION)), token)
    await client.connect()
    try:
        await asyncio.sleep(2.5)
        intent = await client.ask("Is my token still good?")
        await client.wait_for(lambda state: any(error.get("id") == intent for error in state.errors), WAIT_S)
        assert client.state.errors[-1]["code"] == "token_expired"
        assert client.close_code is None
    finally:
        await client.close()
