"""Run an edge: ``python -m edge.main --plan PLAN --name NODE``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from ama import logs, plan as plans
from ama.health import publish_heartbeats
from ama.routing import add_routing_arguments
from ama.runtime import serve_http, stop_on_signals
from edge.app import build_app
from edge.node import EdgeNode
from edge.server import ADMIT_BURST, ADMIT_RATE_PER_S, MAX_CONNECTIONS, Admission, Endpoint, serve_sockets

log = logging.getLogger("ama.edge")


async def run(plan_path: Path, name: str, geoip: Path | None, trusted_proxies: list[str]) -> None:
    view = plans.View(plans.load(plan_path))
    node = EdgeNode(view, name, geoip, trusted_proxies)
    logs.setup(name, node.region)
    stop = stop_on_signals()
    await node.start()
    endpoint = Endpoint(node, Admission(
        max_connections=node.config.get("max_connections", MAX_CONNECTIONS),
        rate_per_s=node.config.get("admit_rate_per_s", ADMIT_RATE_PER_S),
        burst=node.config.get("admit_burst", ADMIT_BURST),
    ))
    log.info("edge starting http_port=%d ws_port=%d", node.config["http_port"], node.config["ws_port"])
    http_stop = asyncio.Event()
    try:
        reuse_port = node.config.get("reuse_port", False)
        async with serve_sockets(endpoint, view.bind_host(node.config), node.config["ws_port"], reuse_port) as server:
            async with asyncio.TaskGroup() as tasks:
                background = [
                    tasks.create_task(node.close_idle_rooms()),
                    tasks.create_task(endpoint.keepalive.run()),
                    tasks.create_task(publish_heartbeats(lambda: node.nc, "edge", name, node.current_region)),
                    tasks.create_task(node.return_home()),
                    tasks.create_task(endpoint.watch_stalls()),
                    tasks.create_task(serve_http(build_app(node), view.bind_host(node.config), node.config["http_port"], http_stop)),
                ]
                await stop.wait()
                # Stop listening first, so new connections are refused at once,
                # then tell every client to reconnect elsewhere.
                log.info("edge stopping: refusing new sockets, closing %d with 1012", len(endpoint.connections))
                server.close(close_connections=False)
                await endpoint.shutdown()
                http_stop.set()
                for task in background[:-1]:
                    task.cancel()
    finally:
        await node.stop()
        log.info("edge stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.main", description="Run an AMA Mesh edge.")
    parser.add_argument("--plan", type=Path, required=True, help="topology plan JSON written by ama up")
    parser.add_argument("--name", required=True, help="this edge's node name in the plan")
    add_routing_arguments(parser)
    args = parser.parse_args()
    # uvloop's transports write to sockets in C, which halves the edge's
    # per-socket cost of a broadcast; asyncio's loop is the fallback.
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args.plan, args.name, args.geoip, args.trusted_proxy))
    else:
        uvloop.run(run(args.plan, args.name, args.geoip, args.trusted_proxy))


if __name__ == "__main__":
    main()
