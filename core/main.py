"""Run the core: ``python -m core.main --plan PLAN --data-dir DIR [--database-url URL]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
from pathlib import Path

from ama import logs, plan as plans
from ama.natsutil import connect
from ama.health import follow_heartbeats
from ama.runtime import serve_http, stop_on_signals
from ama.routing import Routing, add_routing_arguments
from ama.tokens import Signer, Verifier
from core.app import CoreState, build_app
from core.service import CoreReplicas, Ingest
from core.store import open_store, redact_url

log = logging.getLogger("ama.core")


def load_admin_token(path: Path) -> str:
    """Read the admin token, creating it (mode 0600) on first start."""
    if path.exists():
        return path.read_text().strip()
    token = "adm_" + secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token


async def run(plan_path: Path, data_dir: Path, geoip: Path | None, trusted_proxies: list[str], database_url: str | None = None) -> None:
    view = plans.View(plans.load(plan_path))
    region = view.plan["core_region"]
    logs.setup(view.plan["core"]["name"], region)
    stop = stop_on_signals()
    data_dir.mkdir(parents=True, exist_ok=True)

    database = database_url or data_dir / "core.sqlite3"
    store = await open_store(database)
    log.info("core store opened database=%s", redact_url(database))
    signer = Signer.load_or_create(data_dir / "signing-key.json")
    order = [region] + [name for name in view.region_names() if name != region]
    routing = Routing(view, view.region_names(), geoip, trusted_proxies)
    state = CoreState(signer, Verifier(signer.jwks()), load_admin_token(data_dir / "admin-token"), CoreReplicas(store), routing)
    nc = await connect(view.nats_urls_in_order(order), name=view.plan["core"]["name"])
    await follow_heartbeats(nc, routing.board)
    ingest = Ingest(nc, state.replicas, view.region_names(), view.evict_after_s())
    log.info("core starting http_port=%d", view.plan["core"]["http_port"])
    try:
        async with asyncio.TaskGroup() as tasks:
            ingest_task = tasks.create_task(ingest.run())
            await serve_http(build_app(state), view.bind_host(view.plan["core"]), view.plan["core"]["http_port"], stop)
            ingest_task.cancel()
    finally:
        await nc.close()
        await store.close()
        log.info("core stopped")


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default=None,
        help=(
            "store the core's rooms and updates in this PostgreSQL database (postgresql://USER@HOST:PORT/DB); "
            "put the password in PGPASSWORD or ~/.pgpass rather than the URL, since the URL shows in the process list "
            "(default: the SQLite file core.sqlite3 in --data-dir)"
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m core.main", description="Run the AMA Mesh core service.")
    parser.add_argument("--plan", type=Path, required=True, help="topology plan JSON written by ama up")
    parser.add_argument("--data-dir", type=Path, required=True, help="directory of the core's database and keys")
    add_database_argument(parser)
    add_routing_arguments(parser)
    args = parser.parse_args()
    asyncio.run(run(args.plan, args.data_dir, args.geoip, args.trusted_proxy, args.database_url))


if __name__ == "__main__":
    main()
