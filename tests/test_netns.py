"""Network namespaces for ``ama up --netns``: the layout and ``ip`` commands (pure), and a real build and partition."""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import subprocess
import sys

import pytest

from ama import netns, plan as plans
from tests.harness import UpProcess, namespaces_unavailable, summary

PLAN = plans.default_plan()


def isolated(subnet: str = "10.230.4.0/24", cluster_id: str = "0a1b2c") -> dict:
    return netns.isolate(PLAN, cluster_id, subnet)


def test_isolate_gives_region_nodes_namespace_hosts():
    plan = isolated()
    addresses = [region["nats"][0]["host"] for region in plan["regions"]]
    assert addresses == ["10.230.4.10", "10.230.4.11", "10.230.4.12"]
    for region in plan["regions"]:
        assert all(service["host"] == region["nats"][0]["host"] for service in region["region_services"])
        assert all("host" not in edge for edge in region["edges"])
    assert "host" not in plan["core"]
    assert plan["netns"] == {"id": "0a1b2c", "subnet": "10.230.4.0/24"}
    plans.validate(plan)


def test_isolate_leaves_the_original_plan_alone():
    isolated()
    assert "netns" not in PLAN
    assert all("host" not in region["nats"][0] for region in PLAN["regions"])


def test_isolate_rejects_small_or_ipv6_subnets():
    with pytest.raises(netns.NetnsError, match="/24 or larger"):
        netns.isolate(PLAN, "0a1b2c", "10.230.4.0/28")
    with pytest.raises(netns.NetnsError, match="IPv4"):
        netns.isolate(PLAN, "0a1b2c", "fd00::/64")


def test_layout_names_fit_in_interface_names():
    net = netns.layout(isolated())
    assert net.bridge == "ama0a1b2cb"
    assert net.bridge_address == "10.230.4.1"
    assert [region.namespace for region in net.regions] == ["ama-0a1b2c-us-east", "ama-0a1b2c-eu-central", "ama-0a1b2c-ap-southeast"]
    for region in net.regions:
        assert len(region.host_interface) <= netns.MAX_INTERFACE_NAME
        assert len(region.namespace_interface) <= netns.MAX_INTERFACE_NAME


def test_layout_of_a_plan_without_namespaces_is_none():
    assert netns.layout(PLAN) is None


def test_layout_of_an_unknown_region_names_the_regions():
    with pytest.raises(netns.NetnsError, match="no region 'mars'.*us-east"):
        netns.layout(isolated()).of("mars")


def test_partition_commands_cut_both_directions():
    net = netns.layout(isolated())
    commands = netns.partition_commands(net, "eu-central")
    assert ["ip", "-n", "ama-0a1b2c-eu-central", "route", "add", "blackhole", "10.230.4.10/32"] in commands
    assert ["ip", "-n", "ama-0a1b2c-us-east", "route", "add", "blackhole", "10.230.4.11/32"] in commands
    assert ["ip", "-n", "ama-0a1b2c-ap-southeast", "route", "add", "blackhole", "10.230.4.11/32"] in commands
    assert len(commands) == 4
    # Regions on the same side keep their routes to each other.
    assert not any("ama-0a1b2c-us-east" in argv and "10.230.4.12/32" in argv for argv in commands)
    healed = netns.partition_commands(net, "eu-central", heal=True)
    assert [argv[:4] + argv[5:] for argv in healed] == [argv[:4] + argv[5:] for argv in commands]
    assert {argv[4] for argv in healed} == {"delete"}


def test_wrap_runs_a_command_in_the_region_namespace():
    net = netns.layout(isolated())
    assert netns.wrap(net, "us-east", ["nats-server", "-c", "x.conf"]) == ["ip", "netns", "exec", "ama-0a1b2c-us-east", "nats-server", "-c", "x.conf"]


def test_choose_subnet_avoids_used_networks():
    chooser = random.Random(1)
    used = [f"10.{second}.0.0/16" for second in range(200, 254)]
    assert netns.choose_subnet(used, chooser).startswith("10.254.")
    with pytest.raises(netns.NetnsError, match="no free /24"):
        netns.choose_subnet(used + ["10.254.0.0/16"], chooser)


def test_choose_subnet_ignores_ipv6_and_unrelated_networks():
    subnet = netns.choose_subnet(["127.0.0.0/8", "fd00::/8", "192.168.1.0/24"], random.Random(2))
    network = ipaddress.ip_network(subnet)
    assert network.prefixlen == 24
    assert network.subnet_of(ipaddress.ip_network("10.192.0.0/10"))


class FakeIp:
    """A runner that records ``ip`` commands, fails those containing ``fail_on`` and prints ``listing`` for listings."""

    def __init__(self, fail_on: str | None = None, listing: str = ""):
        self.fail_on = fail_on
        self.listing = listing
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess:
        self.calls.append(argv)
        if "show" in argv:
            return subprocess.CompletedProcess(argv, 0, self.listing, "")
        failed = self.fail_on is not None and self.fail_on in argv
        return subprocess.CompletedProcess(argv, 1 if failed else 0, "", "RTNETLINK answers: File exists" if failed else "")


def test_used_networks_reads_addresses_and_routes():
    listing = "1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet 10.200.3.7/24 brd 10.200.3.255 scope global eth0\ndefault via 10.200.3.1 dev eth0\n"
    networks = netns.used_networks(FakeIp(listing=listing))
    assert "127.0.0.0/8" in networks
    assert "10.200.3.0/24" in networks
    assert "0.0.0.0/0" not in networks


def test_create_rejects_overlapping_subnet():
    net = netns.layout(isolated())
    fake = FakeIp(listing="2: eth0    inet 10.230.4.77/24 scope global eth0\n")
    with pytest.raises(netns.NetnsError, match="overlaps 10.230.4.0/24.*new --data-dir"):
        netns.create(net, fake)
    assert not any(argv[:3] == ["ip", "netns", "add"] for argv in fake.calls)


def test_create_rolls_back_on_failure():
    net = netns.layout(isolated())
    fake = FakeIp(fail_on="ama-0a1b2c-ap-southeast")
    with pytest.raises(netns.NetnsError, match="failed: RTNETLINK answers: File exists"):
        netns.create(net, fake)
    assert fake.calls[-1] == ["ip", "link", "delete", "ama0a1b2cb"]


@pytest.mark.skipif(namespaces_unavailable() is not None, reason=f"cannot build namespaces here: {namespaces_unavailable()}")
def test_partition_cuts_regions_not_host():
    net = netns.layout(netns.isolate(PLAN, netns.new_cluster_id(), netns.choose_subnet(netns.used_networks())))
    us, eu = net.of("us-east"), net.of("eu-central")
    server = None
    try:
        netns.create(net)
        # A listener in eu-central's namespace, reached from us-east's namespace and from the host.
        server = subprocess.Popen(
            netns.wrap(net, "eu-central", ["python3", "-c", LISTENER, eu.address]),
            stdout=subprocess.PIPE, text=True,
        )
        port = int(server.stdout.readline())

        def reachable_from_us_east() -> bool:
            probe = netns.wrap(net, "us-east", ["python3", "-c", PROBE, eu.address, str(port)])
            return subprocess.run(probe, capture_output=True, text=True, timeout=20).stdout.strip() == "open"

        assert reachable_from_us_east()
        netns.partition(net, "eu-central")
        assert not reachable_from_us_east()
        with socket.create_connection((eu.address, port), timeout=5):
            pass
        netns.heal(net, "eu-central")
        assert reachable_from_us_east()
        assert us.address != eu.address
    finally:
        if server is not None:
            server.kill()
            server.wait()
        netns.destroy(net)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert net.cluster_id not in listed


@pytest.fixture(scope="module")
def netns_cluster(tmp_path_factory):
    process = UpProcess(tmp_path_factory.mktemp("partition") / "data", ["--netns"])
    try:
        process.start()
        yield process
    finally:
        process.stop()
        # ama up removes its namespaces on a clean stop; after a kill they
        # would stay, so remove them here too.
        plan_path = process.data_dir / "plan.json"
        if plan_path.exists():
            net = netns.layout(plans.load(plan_path))
            if net is not None:
                netns.destroy(net)


@pytest.mark.cluster
@pytest.mark.skipif(namespaces_unavailable() is not None, reason=f"ama up --netns cannot run here: {namespaces_unavailable()}")
def test_partition_drill_sides_work_and_converge(netns_cluster):
    # A hold longer than the NATS servers' ping timeout (3 pings 2 s apart),
    # so the gateway connections are seen to drop.
    argv = [sys.executable, "-m", "ama.cli", "drill", "partition-region", "eu-central", "--data-dir", str(netns_cluster.data_dir),
            "--json", "--before", "2", "--hold", "9", "--after", "2", "--clients-per-region", "5"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, summary(report)
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["converged"] is True
    assert report["intents_committed"] == report["intents_sent"]
    # Both sides took writes while cut off from each other, and their
    # replicas differed until the heal.
    assert all(count > 0 for count in report["acked_during"].values()), report["acked_during"]
    assert report["split_observed"] is True
    assert report["detect_s"] is not None and report["detect_s"] < 9
    assert report["client_reconnects"] == 0
    listed = subprocess.run(["ip", "-n", netns_cluster.info["netns"]["regions"]["eu-central"]["namespace"], "route", "show"],
                            capture_output=True, text=True).stdout
    assert "blackhole" not in listed


LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], 0))
print(server.getsockname()[1], flush=True)
server.settimeout(60)
while True:
    try:
        connection, _ = server.accept()
    except TimeoutError:
        break
    connection.close()
"""

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
    print("open")
except OSError:
    print("cut")
"""
