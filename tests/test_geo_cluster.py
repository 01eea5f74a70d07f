"""Geo routing through a real cluster started with ``ama up --geoip ... --trusted-proxy ...``."""

from __future__ import annotations

import pytest

from tests.harness import http_json

pytestmark = pytest.mark.cluster

# Client address, the region expected first.
CLIENTS = [
    ("81.2.69.142", "eu-central"),
    ("216.160.83.56", "us-east"),
    ("175.16.199.7", "ap-southeast"),
    ("2001:218::1", "ap-southeast"),
]


@pytest.mark.parametrize(("client_ip", "region"), CLIENTS)
def test_join_orders_edges_nearest_first(cluster, client_ip, region):
    room = cluster.create_room("Geo")
    status, body = http_json(
        "POST", f"{cluster.core}/v1/rooms/{room['room']}/join", {"code": room["code"], "name": "geo"}, headers={"X-Forwarded-For": client_ip}
    )
    assert status == 200, body
    assert body["routing"]["client_ip"] == client_ip
    assert body["routing"]["regions"][0] == region
    assert body["edges"][0] == cluster.info["regions"][region]["edges"][0]
    assert len(body["edges"]) == 3


@pytest.mark.parametrize(("client_ip", "region"), CLIENTS)
def test_locate_on_core_and_edges_agree(cluster, client_ip, region):
    urls = [cluster.core] + [region_info["edge_http"][0] for region_info in cluster.info["regions"].values()]
    for url in urls:
        status, body = http_json("GET", url + "/v1/locate", headers={"X-Forwarded-For": f"198.51.100.1, {client_ip}"})
        assert status == 200, url
        assert body["client_ip"] == client_ip, url
        assert body["regions"][0] == region, url
        assert body["edges"][0] == cluster.info["regions"][region]["edges"][0], url


def test_locate_without_location_gives_reason(cluster):
    status, body = http_json("GET", cluster.core + "/v1/locate", headers={"X-Forwarded-For": "214.1.1.1"})
    assert status == 200
    assert body["reason"] == "no_coordinates"
    assert body["location"] is None
    assert body["regions"] == list(cluster.info["regions"])


def test_locate_loopback_uses_edge_home_order(cluster):
    for name, region in cluster.info["regions"].items():
        status, body = http_json("GET", region["edge_http"][0] + "/v1/locate")
        assert status == 200
        assert body["reason"] == "loopback"
        assert body["regions"][0] == name
