"""Run a region service: ``python -m region.main --plan PLAN --name NODE``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from ama import logs, plan as plans
from ama.health import publish_heartbeats
from ama.natsutil import connect
from ama.room import digest
from ama.runtime import serve_http, stop_on_signals
from region.service import RegionService

log = logging.getLogger("ama.region")


def find_service(view: plans.View, name: str) -> tuple[str, dict]:
    for region in view.plan["regions"]:
        for service in region["region_services"]:
            if service["name"] == name:
                return region["name"], service
    raise plans.PlanError(f"no region service named {name!r} in the plan")


def build_app(service: RegionService) -> Starlette:
    async def healthz(request):
        if not service.ready.is_set():
            return JSONResponse({"status": "starting", "service": "region"}, status_code=503)
        return JSONResponse({"status": "ok", "service": "region", "region": service.region, "rooms": len(service.replicas)})

    async def room_digest(request):
        replica = service.replicas.get(request.path_params["room"])
        if replica is None:
            return JSONResponse({"error": {"code": "unknown_room", "message": "This region has no replica of that room."}}, status_code=404)
        return JSONResponse(digest(replica.room))

    return Starlette(routes=[Route("/healthz", healthz), Route("/v1/rooms/{room}/digest", room_digest)])


async def run(plan_path: Path, name: str) -> None:
    view = plans.View(plans.load(plan_path))
    region, node = find_service(view, name)
    logs.setup(name, region)
    stop = stop_on_signals()
    order = [region] + [other for other in view.region_names() if other != region]
    nc = await connect(view.nats_urls_in_order(order), name=name)
    service = RegionService(nc, region, view.region_names(), plans.stream_replicas(view.region(region)), view.evict_after_s())
    log.info("region service starting http_port=%d", node["http_port"])
    try:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(service.run()),
                tasks.create_task(publish_heartbeats(lambda: nc, "region", name, lambda: region)),
            ]
            await serve_http(build_app(service), view.bind_host(node), node["http_port"], stop)
            for task in background:
                task.cancel()
    finally:
        await nc.close()
        log.info("region service stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m region.main", description="Run an AMA Mesh region service.")
    parser.add_argument("--plan", type=Path, required=True, help="topology plan JSON written by ama up")
    parser.add_argument("--name", required=True, help="this region service's node name in the plan")
    args = parser.parse_args()
    asyncio.run(run(args.plan, args.name))


if __name__ == "__main__":
    main()
