"""Run an edge: ``python -m edge.main --plan PLAN --name NODE``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from ama import logs, plan as plans
from ama.runtime import serve_http, stop_on_signals
from edge.app import build_app
from edge.node import EdgeNode
from edge.server import Endpoint, serve_sockets

log = logging.getLogger("ama.edge")


async def run(plan_path: Path, name: str) -> None:
    view = plans.View(plans.load(plan_path))
    node = EdgeNode(view, name)
    logs.setup(name, node.region)
    stop = stop_on_signals()
    await node.start()
    endpoint = Endpoint(node)
    log.info("edge starting http_port=%d ws_port=%d", node.config["http_port"], node.config["ws_port"])
    try:
        async with serve_sockets(endpoint, view.host, node.config["ws_port"]) as server:
            async with asyncio.TaskGroup() as tasks:
                idle_task = tasks.create_task(node.close_idle_rooms())
                await serve_http(build_app(node), view.host, node.config["http_port"], stop)
                idle_task.cancel()
                await endpoint.shutdown()
                server.close()
    finally:
        await node.stop()
        log.info("edge stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.main", description="Run an AMA Mesh edge.")
    parser.add_argument("--plan", type=Path, required=True, help="topology plan JSON written by ama up")
    parser.add_argument("--name", required=True, help="this edge's node name in the plan")
    args = parser.parse_args()
    asyncio.run(run(args.plan, args.name))


if __name__ == "__main__":
    main()
