"""Start and stop real clusters with ``ama up`` for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


class UpProcess:
    """One ``ama up`` run on a data directory, stopped for sure on ``stop``."""

    def __init__(self, data_dir: Path, extra_args: list[str] | None = None):
        self.data_dir = data_dir
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None
        self.info: dict = {}
        self.output = data_dir.parent / f"{data_dir.name}-up.log"

    def start(self) -> dict:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "cluster.json").unlink(missing_ok=True)
        with open(self.output, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ama.cli", "up", "--data-dir", str(self.data_dir), *self.extra_args],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        cluster_json = self.data_dir / "cluster.json"
        while not cluster_json.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"ama up exited with {self.process.returncode}:\n{self.output.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ama up was not ready in {START_TIMEOUT_S} s:\n{self.output.read_text()[-4000:]}")
            time.sleep(0.2)
        self.info = json.loads(cluster_json.read_text())
        return self.info

    def child_pids(self) -> list[int]:
        pids = [self.info.get("core_pid")] if self.info else []
        for region in self.info.get("regions", {}).values():
            for kind in ("nats", "region", "edges"):
                pids += region["pids"][kind]
        return [pid for pid in pids if pid]

    def stop(self) -> None:
        """Stop ama up with SIGTERM; kill it and any child left after STOP_TIMEOUT_S."""
        if self.process is None:
            return
        pids = self.child_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.process = None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


class ClusterApi:
    """Calls against a running cluster's core."""

    def __init__(self, info: dict):
        self.info = info

    @property
    def core(self) -> str:
        return self.info["core"]

    def regions(self) -> list[str]:
        return list(self.info["regions"])

    def edge(self, region: str, index: int = 0) -> str:
        return self.info["regions"][region]["edges"][index]

    def create_room(self, title: str = "Test room") -> dict:
        status, body = http_json("POST", self.core + "/v1/rooms", {"title": title}, self.info["admin_token"])
        assert status == 201, body
        return body

    def join(self, room: dict, name: str) -> dict:
        status, body = http_json("POST", f"{self.core}/v1/rooms/{room['room']}/join", {"code": room["code"], "name": name})
        assert status == 200, body
        return body

    def export(self, room: dict) -> dict:
        status, body = http_json("GET", f"{self.core}/v1/rooms/{room['room']}/export", token=room["host_token"])
        assert status == 200, body
        return body


def namespaces_unavailable() -> str | None:
    """Return why this machine cannot build network namespaces for ``ama up --netns``, or None when it can."""
    from ama import netns

    try:
        netns.check_available()
    except netns.NetnsError as exc:
        return str(exc)
    return None


def summary(report: dict) -> str:
    """Return the fields that explain a failed drill, for assertion messages."""
    keys = ("lost", "duplicated", "unacknowledged", "converged", "replicas_checked", "detect_s", "rehome_s", "client_reconnects", "problems")
    return json.dumps({key: report.get(key) for key in keys})


def run_drill(process: UpProcess, *args: str) -> tuple[int, dict]:
    """Run a short ``ama drill`` against ``process``; return its exit status and JSON report.

    Options in ``args`` come last, so they override these defaults.
    """
    argv = [sys.executable, "-m", "ama.cli", "drill", "--data-dir", str(process.data_dir), "--json",
            "--before", "2", "--hold", "4", "--after", "2", "--clients-per-region", "5", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])
