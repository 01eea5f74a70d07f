"""The ``ama`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ama import plan as plans
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
    add_routing_arguments(up)

    restart = commands.add_parser(
        "restart",
        help="restart the stopped processes of a region (or the core) in a running 'ama up'",
        description="Ask the 'ama up' running on DIR to start again the processes of TARGET that have stopped, wait until they are ready, and rewrite DIR/cluster.json with their new process ids.",
    )
    restart.add_argument("target", metavar="TARGET", help="a region name, or 'core'")
    restart.add_argument("--data-dir", type=Path, default=Path("data"), help="data dir of the running 'ama up' (default: ./data)")
    restart.add_argument("--with-edges", action="store_true", help="restart the region's stopped edges too")

    plan = commands.add_parser("plan", help="print a default topology plan as JSON", description="Print the default three-region plan with free ports, for editing and 'ama up --plan'.")
    plan.add_argument("--edges-per-region", type=int, default=1, help="edges in each region (default: 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s ama: %(message)s")
    if args.command == "up":
        from ama.supervisor import UpError, run

        try:
            return run(args.data_dir, args.plan, args.geoip, args.trusted_proxy)
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
        print("restarted: " + (", ".join(reply["restarted"]) or "nothing (every process was running)"))
        return 0
    if args.command == "plan":
        if args.edges_per_region < 1:
            print("ama plan: error: --edges-per-region must be at least 1", file=sys.stderr)
            return 2
        print(json.dumps(plans.default_plan(args.edges_per_region), indent=2))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
