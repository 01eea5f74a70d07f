"""The servers under test: an AMA cluster (``ama up`` or an existing cluster.json) and the peers.

Each system starts its server process, returns where clients connect,
which dialect they speak and which process to measure, and stops what it
started by process id. Peers live in ``benchmarks/`` with pinned manifests and are
installed there on first use.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ama.bench import procfs

PEERS = ("node-ws", "pycrdt-websocket", "hocuspocus")
START_TIMEOUT_S = 120.0
INSTALL_TIMEOUT_S = 600.0
# Watchers share this many audience tokens (users) at most; each user may have many sockets, like browser tabs.
MAX_WATCHER_USERS = 1000


class ServerSetupError(Exception):
    """A server under test could not be installed, started or prepared."""


@dataclass
class Setup:
    """The URLs, tokens, dialect and questions of one round's clients."""

    dialect: dict
    questions: list[str]
    voter_urls: list[str]
    watcher_urls: list[str]
    voter_tokens: list[str]
    watcher_tokens: list[str]
    # Watcher URL -> region name, for the cross-region scenario.
    regions: dict[str, str] = field(default_factory=dict)


def benchmarks_dir() -> Path:
    """Return the ``benchmarks/`` folder of this checkout, or $AMA_BENCH_PEERS_DIR."""
    configured = os.environ.get("AMA_BENCH_PEERS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "benchmarks"


# -- AMA ---------------------------------------------------------------------------


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None, timeout_s: float = 10.0) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise ServerSetupError(f"{method} {url} failed with HTTP {error.code}: {error.read()[:300]!r}") from None


class AmaCluster:
    """An ``ama up`` run in a temporary data directory, or an existing cluster described by a cluster.json."""

    def __init__(self, cluster_file: Path | None = None, log_dir: Path | None = None):
        self.cluster_file = cluster_file
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.data_dir: Path | None = None
        self.info: dict = {}

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def start(self) -> dict:
        if self.cluster_file is not None:
            self.info = json.loads(self.cluster_file.read_text())
            return self.info
        self.data_dir = Path(tempfile.mkdtemp(prefix="ama-bench-"))
        log_path = (self.log_dir or self.data_dir) / "ama-up.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ama.cli", "up", "--data-dir", str(self.data_dir / "data")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        cluster_json = self.data_dir / "data" / "cluster.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not cluster_json.exists():
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-1500:]
                raise ServerSetupError(f"ama up exited with code {self.process.returncode}; see {log_path}:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerSetupError(f"ama up was not ready within {START_TIMEOUT_S:.0f} s; see {log_path}")
            time.sleep(0.2)
        self.info = json.loads(cluster_json.read_text())
        return self.info

    def child_pids(self) -> list[int]:
        pids = [self.info.get("core_pid")]
        for region in self.info.get("regions", {}).values():
            for kind in ("nats", "region", "edges"):
                pids += region.get("pids", {}).get(kind, [])
        return [pid for pid in pids if pid]

    def stop(self) -> None:
        """Stop ``ama up`` with SIGTERM, then every child it listed that is still alive; leave external clusters alone."""
        if self.process is None:
            return
        children = self.child_pids()
        procfs.stop_pid(self.process.pid, timeout_s=60)
        self.process.wait(timeout=5)
        for pid in children:
            procfs.stop_pid(pid, timeout_s=5)
        self.process = None
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def regions(self) -> list[str]:
        return list(self.info["regions"])

    def edge_url(self, region: str, index: int = 0) -> str:
        return self.info["regions"][region]["edges"][index]

    def edge_pid(self, region: str, index: int = 0) -> int | None:
        pids = self.info["regions"][region].get("pids", {}).get("edges", [])
        return pids[index] if len(pids) > index else None

    def create_room(self) -> dict:
        return http_json("POST", self.info["core"] + "/v1/rooms", {"title": "ama bench"}, self.info["admin_token"])

    def join(self, room: dict, count: int, prefix: str) -> list[str]:
        """Join ``count`` users to the room through the core and return their tokens."""
        url = f"{self.info['core']}/v1/rooms/{room['room']}/join"

        def join_one(index: int) -> str:
            return http_json("POST", url, {"code": room["code"], "name": f"{prefix}{index}"})["token"]

        with ThreadPoolExecutor(8) as executor:
            return list(executor.map(join_one, range(count)))

    def all_pids(self) -> list[int]:
        supervisor = [self.process.pid] if self.process is not None else []
        return supervisor + self.child_pids()


async def ask_questions(url: str, host_token: str, count: int, timeout_s: float = 20.0) -> list[str]:
    """Ask ``count`` questions as the host through ``url`` and wait until that edge shows them all."""
    from ama.client import AmaClient

    client = AmaClient(url, host_token)
    await client.connect()
    try:
        ids = [await client.ask(f"Benchmark question {number + 1}") for number in range(count)]
        await client.wait_for(lambda state: all(question in state.questions for question in ids), timeout_s)
    finally:
        await client.close()
    return ids


class AmaSystem:
    """AMA: clients of one edge (``fanout``, ``idle``, ``connect``) or of several regions (``cross-region``)."""

    name = "ama"

    def __init__(self, cluster_file: Path | None = None, log_dir: Path | None = None):
        self.cluster = AmaCluster(cluster_file, log_dir)
        self.region: str | None = None

    @property
    def started_here(self) -> bool:
        return self.cluster.started_here

    def start(self) -> None:
        self.cluster.start()
        self.region = self.cluster.regions()[0]

    def stop(self) -> None:
        self.cluster.stop()

    @property
    def server_pid(self) -> int | None:
        return self.cluster.edge_pid(self.region) if self.region else None

    def other_pids(self) -> list[int]:
        """Return the cluster's processes other than the measured edge (NATS, core, regions, other edges)."""
        return [pid for pid in self.cluster.all_pids() if pid != self.server_pid]

    def describe(self) -> str:
        return f"edge {self.region}/0 of {'an existing cluster' if self.cluster.cluster_file else 'ama up'}"

    def prepare(self, voters: int, watchers: int, questions: int, cross_region: bool = False) -> Setup:
        room = self.cluster.create_room()
        voter_region = self.region
        voter_url = self.cluster.edge_url(voter_region)
        if cross_region:
            others = [region for region in self.cluster.regions() if region != voter_region]
            if not others:
                raise ServerSetupError("cross-region needs a cluster with two or more regions")
            watcher_urls = [self.cluster.edge_url(region) for region in others]
            regions = {self.cluster.edge_url(region): region for region in others}
        else:
            watcher_urls, regions = [voter_url], {}
        voter_tokens = self.cluster.join(room, voters, "voter-")
        watcher_tokens = self.cluster.join(room, min(watchers, MAX_WATCHER_USERS), "watcher-") if watchers else []
        ids = asyncio.run(ask_questions(voter_url, room["host_token"], questions)) if questions else []
        return Setup({"kind": "json"}, ids, [voter_url], watcher_urls, voter_tokens, watcher_tokens, regions)


# -- peers -------------------------------------------------------------------------


def ensure_node_peer(folder: Path, progress) -> None:
    """Install a Node peer's pinned dependencies with ``npm ci`` unless they are there."""
    if (folder / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ServerSetupError(f"Node.js and npm are needed for this peer; install them, then run: cd {folder} && npm ci")
    progress(f"installing the peer in {folder} with 'npm ci' (first use only)")
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if result.returncode != 0:
        raise ServerSetupError(f"'npm ci' in {folder} failed with code {result.returncode}:\n{result.stderr[-2000:]}")


def ensure_python_peer(folder: Path, progress) -> Path:
    """Create ``folder/.venv`` from ``requirements.txt`` unless it is there; return its python."""
    python = folder / ".venv" / "bin" / "python"
    marker = folder / ".venv" / "installed-requirements.txt"
    requirements = (folder / "requirements.txt").read_text()
    if python.exists() and marker.exists() and marker.read_text() == requirements:
        return python
    command = f"{sys.executable} -m venv {folder / '.venv'} && {python} -m pip install -r {folder / 'requirements.txt'}"
    progress(f"installing the peer in {folder / '.venv'} with pip (first use only): {command}")
    subprocess.run([sys.executable, "-m", "venv", str(folder / ".venv")], check=True, timeout=INSTALL_TIMEOUT_S)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(folder / "requirements.txt")],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise ServerSetupError(f"pip install for {folder} failed with code {result.returncode}; run it by hand: {command}\n{result.stderr[-2000:]}")
    marker.write_text(requirements)
    return python


class PeerSystem:
    """A peer server process that prints ``{"listening": PORT}`` on its first line of output."""

    name = ""

    def __init__(self, progress, log_dir: Path | None = None):
        self.progress = progress
        self.log_dir = log_dir
        self.folder = benchmarks_dir() / self.name
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def install(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if not self.folder.is_dir():
            raise ServerSetupError(f"peer folder {self.folder} not found; run from a checkout of the project or set AMA_BENCH_PEERS_DIR")
        self.install()
        log_path = (self.log_dir or Path(tempfile.gettempdir())) / f"ama-bench-{self.name}.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.folder, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        line = self._first_line(self.process, START_TIMEOUT_S)
        try:
            self.port = int(json.loads(line)["listening"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise ServerSetupError(f"peer {self.name} did not start (first output {line!r}); see {log_path}") from None

    @staticmethod
    def _first_line(process: subprocess.Popen, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                return process.stdout.readline().decode(errors="replace").strip()
            if process.poll() is not None:
                return ""
        return ""

    def stop(self) -> None:
        if self.process is None:
            return
        procfs.stop_pid(self.process.pid, timeout_s=10)
        self.process.wait(timeout=5)
        self.process.stdout.close()
        self.process = None

    started_here = True

    @property
    def server_pid(self) -> int | None:
        return self.process.pid if self.process else None

    def other_pids(self) -> list[int]:
        return []

    def describe(self) -> str:
        return f"{self.name} server process"

    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def short_id() -> str:
    return "q" + secrets.token_hex(4)


class NodeWsSystem(PeerSystem):
    name = "node-ws"

    def install(self) -> None:
        ensure_node_peer(self.folder, self.progress)

    def command(self) -> list[str]:
        return ["node", "server.mjs", "--host", "127.0.0.1", "--port", "0"]

    def prepare(self, voters: int, watchers: int, questions: int, cross_region: bool = False) -> Setup:
        url = self.base_url() + "/"
        ids = [str(uuid.uuid4()) for _ in range(questions)]
        tag = secrets.token_hex(3)
        return Setup({"kind": "json"}, ids, [url], [url], [f"voter-{tag}-{i}" for i in range(voters)], [f"watcher-{tag}-{i}" for i in range(max(1, min(watchers, MAX_WATCHER_USERS)))])


class PycrdtWebsocketSystem(PeerSystem):
    name = "pycrdt-websocket"

    def install(self) -> None:
        self.python = ensure_python_peer(self.folder, self.progress)

    def command(self) -> list[str]:
        return [str(self.python), "server.py", "--host", "127.0.0.1", "--port", "0"]

    def prepare(self, voters: int, watchers: int, questions: int, cross_region: bool = False) -> Setup:
        url = f"{self.base_url()}/bench-{secrets.token_hex(4)}"
        ids = [short_id() for _ in range(questions)]
        return Setup({"kind": "yjs", "questions": ids}, ids, [url], [url], [""] * max(voters, 1), [""])


class HocuspocusSystem(PeerSystem):
    name = "hocuspocus"

    def install(self) -> None:
        ensure_node_peer(self.folder, self.progress)

    def command(self) -> list[str]:
        return ["node", "server.mjs", "--host", "127.0.0.1", "--port", "0"]

    def prepare(self, voters: int, watchers: int, questions: int, cross_region: bool = False) -> Setup:
        url = self.base_url() + "/"
        ids = [short_id() for _ in range(questions)]
        document = f"bench-{secrets.token_hex(4)}"
        return Setup({"kind": "hocuspocus", "document": document, "questions": ids}, ids, [url], [url], ["token"] * max(voters, 1), ["token"])


def make_system(name: str, progress, cluster_file: Path | None = None, log_dir: Path | None = None):
    if name == "ama":
        return AmaSystem(cluster_file, log_dir)
    peers = {"node-ws": NodeWsSystem, "pycrdt-websocket": PycrdtWebsocketSystem, "hocuspocus": HocuspocusSystem}
    if name not in peers:
        raise ServerSetupError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    return peers[name](progress, log_dir)
