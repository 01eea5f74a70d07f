"""The ``ama`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ama import plan as plans
from ama.bench.command import add_parser as add_bench_parser, run as run_bench
from ama.drill.run import FAULTS
from ama.routing import add_routing_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ama", description="AMA Mesh: live Ask Me Anything rooms replicated across regions.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser(
        "up",
        help="start a whole cluster (three regions, core, edges) on this machine",
        description=(
            "Start a cluster on this machine and stay in the foreground until Ctrl-C. "
            "The first run picks free ports and keeps them in DIR/plan.json; later runs on the "
            "same data dir reuse them and keep every room. DIR/cluster.json is written once "
            "every process is ready."
        ),
    )
    up.add_argument("--data-dir", type=Path, default=Path("data"), help="directory for the plan, stores, logs and cluster.json (default: ./data)")
    up.add_argument("--plan", type=Path, default=None, help="start this topology plan (JSON) instead of the default three regions")
    up.add_argument(
        "--database-url",
        metavar="URL",
        default=None,
        help=(
            "make the core store rooms and updates in this PostgreSQL database (postgresql://USER@HOST:PORT/DB); "
            "put the password in PGPASSWORD or ~/.pgpass rather than the URL, since the URL shows in the process list "
            "(default: an SQLite file under DIR/core)"
        ),
    )
    up.add_argument(
        "--netns",
        action="store_true",
        help=(
            "on the first run, put each region's NATS servers and region services in a Linux network namespace of its own "
            "(needs root and iproute2), so that 'ama drill partition-region' can cut a region's gateways"
        ),
    )
    add_routing_arguments(up)

    restart = commands.add_parser(
        "restart",
        help="restart the stopped processes of a region (or the core) in a running 'ama up'",
        description="Ask the 'ama up' running on DIR to start again the processes of TARGET that have stopped, wait until they are ready, and rewrite DIR/cluster.json with their new process ids.",
    )
    restart.add_argument("target", metavar="TARGET", help="a region name, or 'core'")
    restart.add_argument("--data-dir", type=Path, default=Path("data"), help="data dir of the running 'ama up' (default: ./data)")
    restart.add_argument("--with-edges", action="store_true", help="restart the region's stopped edges too")

    drill = commands.add_parser(
        "drill",
        help="inject a fault into a running 'ama up' cluster under a synthetic audience and check the history",
        description=(
            "Run a failover drill against the cluster that 'ama up' runs on DIR: drive a synthetic audience on every "
            "region, inject FAULT into TARGET, hold it, restore it, wait for convergence and check that nothing "
            "acknowledged was lost or applied twice. Exits 1 when the check fails."
        ),
    )
    drill.add_argument("fault", metavar="FAULT", choices=FAULTS, help="one of: " + ", ".join(FAULTS))
    drill.add_argument("target", metavar="TARGET", nargs="?", default="", help="a region name; for kill-edge a region (its first edge) or an edge URL; for kill-core 'core'; none for random")
    drill.add_argument("--data-dir", type=Path, default=Path("data"), help="data dir of the running 'ama up' (default: ./data)")
    drill.add_argument("--with-edges", action="store_true", help="on region faults, take the region's edges down too")
    drill.add_argument("--hold", type=float, default=10.0, metavar="SECONDS", help="how long the fault is held (default: 10)")
    drill.add_argument("--before", type=float, default=5.0, metavar="SECONDS", help="audience warm-up before the fault (default: 5)")
    drill.add_argument("--after", type=float, default=5.0, metavar="SECONDS", help="audience time after the restore (default: 5)")
    drill.add_argument("--clients-per-region", type=int, default=10, metavar="N", help="synthetic clients per region (default: 10)")
    drill.add_argument(
        "--max-intents", type=int, default=None, metavar="N",
        help="upper bound on votes sent in the whole drill (default: enough for every client to vote through every phase, 20 %% to spare)",
    )
    drill.add_argument("--faults", type=int, default=3, metavar="N", help="for FAULT random: how many random faults to inject one after another (default: 3)")
    drill.add_argument("--seed", type=int, default=None, help="for FAULT random: seed of the fault sequence, to repeat a run")
    drill.add_argument("--gap", type=float, default=3.0, metavar="SECONDS", help="for FAULT random: audience time between a restore and the next fault (default: 3)")
    drill.add_argument("--json", action="store_true", help="print the report as one JSON object")

    room = commands.add_parser(
        "room",
        help="create a room, or issue a new host link, on a running 'ama up' cluster",
        description="Create rooms and host links with the admin token of the cluster that 'ama up' runs on DIR.",
    )
    room_commands = room.add_subparsers(dest="room_command", metavar="ACTION", required=True)
    create = room_commands.add_parser("create", help="create a room and print its join code and links")
    create.add_argument("title", help="the room's title, 1 to 200 characters")
    create.add_argument("--data-dir", type=Path, default=Path("data"), help="data dir of the running 'ama up' (default: ./data)")
    host_link = room_commands.add_parser("host-link", help="print a new host link (with a fresh 12-hour token) for a room")
    host_link.add_argument("room", help="the room id")
    host_link.add_argument("--data-dir", type=Path, default=Path("data"), help="data dir of the running 'ama up' (default: ./data)")

    add_bench_parser(commands)

    plan = commands.add_parser("plan", help="print a default topology plan as JSON", description="Print the default three-region plan with free ports, for editing and 'ama up --plan'.")
    plan.add_argument("--edges-per-region", type=int, default=1, help="edges in each region (default: 1)")
    plan.add_argument(
        "--nats-per-region", type=int, default=1,
        help="nats-servers in each region (default: 1); with 3 or more, each region's stream keeps 3 replicas and survives the loss of its leader",
    )
    plan.add_argument("--processes-per-edge", type=int, default=1,
                      help="edge processes sharing each edge's WebSocket port with SO_REUSEPORT, one core each (default: 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s ama: %(message)s")
    if args.command == "up":
        from ama.supervisor import UpError, run

        try:
            return run(args.data_dir, args.plan, args.geoip, args.trusted_proxy, args.database_url, args.netns)
        except (UpError, plans.PlanError, FileNotFoundError) as exc:
            print(f"ama up: error: {exc}", file=sys.stderr)
            return 2
    if args.command == "restart":
        from ama.supervisor import UpError, request_restart

        try:
            reply = request_restart(args.data_dir, args.target, args.with_edges)
        except UpError as exc:
            print(f"ama restart: error: {exc}", file=sys.stderr)
            return 2
        print("restarted: " + (", ".join(reply["restarted"]) or "nothing"))
        if reply.get("still_stopped"):
            hint = " (add --with-edges to restart edges)" if not args.with_edges else ""
            print("still stopped: " + ", ".join(reply["still_stopped"]) + hint)
        return 0
    if args.command == "bench":
        return run_bench(args)
    if args.command == "drill":
        return run_drill_command(args)
    if args.command == "room":
        return run_room_command(args)
    if args.command == "plan":
        if args.edges_per_region < 1 or args.nats_per_region < 1:
            print("ama plan: error: --edges-per-region and --nats-per-region must be at least 1", file=sys.stderr)
            return 2
        if args.processes_per_edge < 1:
            print("ama plan: error: --processes-per-edge must be at least 1", file=sys.stderr)
            return 2
        plan = plans.default_plan(args.edges_per_region, nats_per_region=args.nats_per_region, processes_per_edge=args.processes_per_edge)
        print(json.dumps(plan, indent=2))
        return 0
    return 2


def run_room_command(args) -> int:
    import urllib.error

    from ama.supervisor import request_json

    path = args.data_dir / "cluster.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"ama room: error: {path} not found; start the cluster with 'ama up --data-dir {args.data_dir}' first", file=sys.stderr)
        return 2
    regions = list(info["regions"].values())
    host_edge, audience_edge = regions[0]["edge_http"][0], regions[-1]["edge_http"][0]
    try:
        if args.room_command == "create":
            created = request_json("POST", info["core"] + "/v1/rooms", {"title": args.title}, info["admin_token"])
            room, code, token = created["room"], created["code"], created["host_token"]
            print(f"room {room}, join code {code}")
            print(f"  audience: {audience_edge}/?room={room}&code={code}")
        else:
            room = args.room
            token = request_json("POST", f"{info['core']}/v1/rooms/{room}/host-token", {}, info["admin_token"])["token"]
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read() or b"{}").get("error", {})
        detail = f"there is no room {args.room!r} on this cluster" if error.get("code") == "unknown_room" else error.get("message", exc.reason)
        print(f"ama room: error: {detail}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ama room: error: the core at {info['core']} did not answer ({exc}); is 'ama up' running?", file=sys.stderr)
        return 2
    print(f"  host:     {host_edge}/?room={room}#token={token}")
    print("The host link is valid for 12 hours; the page refreshes its token for up to 30 days after that.")
    return 0


def run_drill_command(args) -> int:
    import asyncio

    from ama.drill.run import DrillError, DrillOptions, format_report, passed, run_drill

    for name in ("hold", "before", "after", "gap"):
        if getattr(args, name) < 0:
            print(f"ama drill: error: --{name} must not be negative", file=sys.stderr)
            return 2
    if args.clients_per_region < 1 or (args.max_intents is not None and args.max_intents < 1):
        print("ama drill: error: --clients-per-region and --max-intents must be at least 1", file=sys.stderr)
        return 2
    if args.fault != "random" and not args.target:
        print(f"ama drill: error: {args.fault} needs a TARGET (a region name, or 'core' for kill-core)", file=sys.stderr)
        return 2
    options = DrillOptions(
        args.fault, args.target, args.data_dir, args.with_edges, args.clients_per_region,
        before_s=args.before, hold_s=args.hold, after_s=args.after, max_intents=args.max_intents, progress=not args.json,
        random_faults=args.faults if args.fault == "random" else 0, seed=args.seed, gap_s=args.gap,
    )
    try:
        report = asyncio.run(run_drill(options))
    except DrillError as exc:
        print(f"ama drill: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else format_report(report))
    return 0 if passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
