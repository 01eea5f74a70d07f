"""Network namespaces that give each region of an ``ama up`` cluster its own network.

With ``ama up --netns`` every region's NATS servers and region services run
in a network namespace of their own, each with one address on a bridge in
the host's namespace. Edges and the core stay in the host's namespace and
reach every region over the bridge, as edges reach regions in a real
deployment. Regions talk to each other only through NATS gateways, so
cutting the routes between two regions' namespaces cuts exactly their
gateways: that is how ``ama drill partition-region`` partitions a region
while its edges and clients keep working.

The layout (names and addresses) is pure and computed from the plan. The
``ip`` commands that build and change it run through a runner passed in.
Linux only, as root, with iproute2's ``ip``.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Kernel interface names are at most 15 bytes.
MAX_INTERFACE_NAME = 15
# A region namespace's address is FIRST_REGION_HOST + its index in the plan.
FIRST_REGION_HOST = 10
# Subnets are chosen from 10.200.0.0/16 .. 10.254.255.0/24, away from the
# low 10.x ranges that container runtimes and VPNs usually take.
SUBNET_FIRST_OCTET = 10
SUBNET_SECOND_OCTETS = range(200, 255)

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


class NetnsError(Exception):
    """Namespaces cannot be built or changed. The message states what to do."""


@dataclass(frozen=True)
class RegionNetwork:
    region: str
    namespace: str
    address: str
    host_interface: str
    namespace_interface: str


@dataclass(frozen=True)
class Layout:
    """The names and addresses of one cluster's namespaces."""

    cluster_id: str
    subnet: str
    bridge: str
    bridge_address: str
    regions: tuple[RegionNetwork, ...]

    def of(self, region: str) -> RegionNetwork:
        for network in self.regions:
            if network.region == region:
                return network
        raise NetnsError(f"no region {region!r} in the namespace layout; regions are {[n.region for n in self.regions]}")


def new_cluster_id(chooser: random.Random | None = None) -> str:
    """Return 6 hex digits that keep one cluster's namespace and interface names apart from another's."""
    return f"{(chooser or random.SystemRandom()).getrandbits(24):06x}"


def choose_subnet(used: Iterable[str], chooser: random.Random | None = None) -> str:
    """Return a free /24 in 10.200.0.0-10.254.255.0 that overlaps none of the ``used`` networks."""
    occupied = [ipaddress.ip_network(network, strict=False) for network in used]
    occupied = [network for network in occupied if network.version == 4]
    candidates = [
        ipaddress.ip_network(f"{SUBNET_FIRST_OCTET}.{second}.{third}.0/24")
        for second in SUBNET_SECOND_OCTETS for third in range(256)
    ]
    chooser = chooser or random.SystemRandom()
    chooser.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(network) for network in occupied):
            return str(candidate)
    raise NetnsError("no free /24 left in 10.200.0.0-10.254.255.0 for the cluster's namespaces; remove unused interfaces")


def layout(plan: dict) -> Layout | None:
    """Return the namespace layout of a plan made with ``isolate``, or None for a plan without namespaces."""
    settings = plan.get("netns")
    if not settings:
        return None
    cluster_id = settings["id"]
    subnet = ipaddress.ip_network(settings["subnet"])
    hosts = list(subnet.hosts())
    regions = []
    for index, region in enumerate(plan["regions"]):
        regions.append(RegionNetwork(
            region=region["name"],
            namespace=f"ama-{cluster_id}-{region['name']}",
            address=str(hosts[FIRST_REGION_HOST - 1 + index]),
            host_interface=f"ama{cluster_id}h{index}",
            namespace_interface=f"ama{cluster_id}n{index}",
        ))
    result = Layout(cluster_id, str(subnet), f"ama{cluster_id}b", str(hosts[0]), tuple(regions))
    for name in [result.bridge] + [n.host_interface for n in regions] + [n.namespace_interface for n in regions]:
        if len(name) > MAX_INTERFACE_NAME:
            raise NetnsError(f"interface name {name} is longer than {MAX_INTERFACE_NAME} bytes; the plan has too many regions for --netns")
    return result


def isolate(plan: dict, cluster_id: str, subnet: str) -> dict:
    """Return a copy of ``plan`` whose regions' NATS servers and region services live in namespaces.

    Each of those nodes gets its region namespace's address as its ``host``.
    Edges and the core keep the plan's host and stay in the host's namespace.
    """
    network = ipaddress.ip_network(subnet)
    if network.prefixlen > 24 or network.version != 4:
        raise NetnsError(f"subnet {subnet} must be an IPv4 network of /24 or larger")
    hosts = list(network.hosts())
    if FIRST_REGION_HOST + len(plan["regions"]) > len(hosts):
        raise NetnsError(f"subnet {subnet} is too small for {len(plan['regions'])} regions")
    isolated = {**plan, "netns": {"id": cluster_id, "subnet": str(network)}, "regions": []}
    for index, region in enumerate(plan["regions"]):
        address = str(hosts[FIRST_REGION_HOST - 1 + index])
        isolated["regions"].append({
            **region,
            "nats": [{**server, "host": address} for server in region["nats"]],
            "region_services": [{**service, "host": address} for service in region["region_services"]],
        })
    return isolated


def create_commands(net: Layout) -> list[list[str]]:
    """Return the ``ip`` commands that build the bridge and every region's namespace, in order."""
    prefix = net.subnet.split("/")[1]
    commands = [
        ["ip", "link", "add", net.bridge, "type", "bridge"],
        ["ip", "addr", "add", f"{net.bridge_address}/{prefix}", "dev", net.bridge],
        ["ip", "link", "set", net.bridge, "up"],
    ]
    for region in net.regions:
        commands += [
            ["ip", "netns", "add", region.namespace],
            ["ip", "link", "add", region.host_interface, "type", "veth", "peer", "name", region.namespace_interface, "netns", region.namespace],
            ["ip", "link", "set", region.host_interface, "master", net.bridge],
            ["ip", "link", "set", region.host_interface, "up"],
            ["ip", "-n", region.namespace, "addr", "add", f"{region.address}/{prefix}", "dev", region.namespace_interface],
            ["ip", "-n", region.namespace, "link", "set", region.namespace_interface, "up"],
            ["ip", "-n", region.namespace, "link", "set", "lo", "up"],
        ]
    return commands


def destroy_commands(net: Layout) -> list[list[str]]:
    """Return the ``ip`` commands that remove what ``create_commands`` built (deleting a namespace deletes its veth pair)."""
    return [["ip", "netns", "delete", region.namespace] for region in net.regions] + [["ip", "link", "delete", net.bridge]]


def partition_commands(net: Layout, region: str, heal: bool = False) -> list[list[str]]:
    """Return the ``ip`` commands that cut (or, with ``heal``, restore) every route between ``region`` and the other regions.

    Blackhole routes drop packets silently, as a cut link does: open gateway
    connections stall until NATS pings time them out, and new ones time out
    while connecting. The host's namespace (edges, core) keeps its routes to
    both sides.
    """
    cut = net.of(region)
    action = "delete" if heal else "add"
    commands = []
    for other in net.regions:
        if other.region == region:
            continue
        commands.append(["ip", "-n", cut.namespace, "route", action, "blackhole", f"{other.address}/32"])
        commands.append(["ip", "-n", other.namespace, "route", action, "blackhole", f"{cut.address}/32"])
    return commands


def wrap(net: Layout, region: str, argv: list[str]) -> list[str]:
    """Return ``argv`` run inside ``region``'s namespace (``ip netns exec`` execs in place, so the process id stays)."""
    return ["ip", "netns", "exec", net.of(region).namespace, *argv]


def run_ip(argv: list[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def check_available() -> None:
    """Raise NetnsError unless this process can build namespaces."""
    if not os.uname().sysname == "Linux":
        raise NetnsError("--netns needs Linux network namespaces")
    if shutil.which("ip") is None:
        raise NetnsError("--netns needs iproute2's 'ip' command; install it (apt-get install iproute2)")
    if os.geteuid() != 0:
        raise NetnsError("--netns needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to build network namespaces; run ama as root")


def used_networks(runner: Runner = run_ip) -> list[str]:
    """Return the IPv4 networks on this machine's interfaces and routes."""
    networks = []
    for argv in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        result = runner(argv)
        for line in result.stdout.splitlines():
            for word in line.split():
                try:
                    network = ipaddress.ip_network(word, strict=False)
                except ValueError:
                    continue
                if network.prefixlen > 0:
                    networks.append(str(network))
    return networks


def _run_all(commands: list[list[str]], runner: Runner, ignore_missing: bool = False) -> None:
    for argv in commands:
        result = runner(argv)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            if ignore_missing:
                continue
            raise NetnsError(f"'{' '.join(argv)}' failed: {message}")


def create(net: Layout, runner: Runner = run_ip) -> None:
    """Build the layout, removing first whatever an earlier run of the same cluster left behind."""
    destroy(net, runner)
    ours = ipaddress.ip_network(net.subnet)
    clashes = [network for network in used_networks(runner) if ipaddress.ip_network(network).overlaps(ours)]
    if clashes:
        raise NetnsError(
            f"the cluster's subnet {net.subnet} overlaps {clashes[0]} on this machine; "
            "start with a new --data-dir so that a free subnet is chosen"
        )
    try:
        _run_all(create_commands(net), runner)
    except NetnsError:
        destroy(net, runner)
        raise


def destroy(net: Layout, runner: Runner = run_ip) -> None:
    """Remove the layout; parts that do not exist are skipped, so this is safe to repeat."""
    _run_all(destroy_commands(net), runner, ignore_missing=True)


def partition(net: Layout, region: str, runner: Runner = run_ip) -> None:
    try:
        _run_all(partition_commands(net, region), runner)
    except NetnsError:
        heal(net, region, runner)
        raise


def heal(net: Layout, region: str, runner: Runner = run_ip) -> None:
    _run_all(partition_commands(net, region, heal=True), runner, ignore_missing=True)
