"""Geo routing: client address rules and the resolver, table by table, on MaxMind's test databases."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ama.addresses import client_address, parse_address, parse_networks
from ama.geo import GeoDatabase, Resolver
from ama.plan import DEFAULT_REGIONS

DATA = Path(__file__).parent / "data" / "geoip"
CITY = DATA / "GeoIP2-City-Test.mmdb"
COUNTRY = DATA / "GeoLite2-Country-Test.mmdb"
REGIONS = [{"name": name, "location": list(location)} for name, location in DEFAULT_REGIONS]
DEFAULT_ORDER = ["us-east", "eu-central", "ap-southeast"]
TRUSTED = parse_networks(["10.0.0.0/8", "::1/128", "127.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.9", [], "203.0.113.9"),
        ("203.0.113.9", ["81.2.69.142"], "203.0.113.9"),
        ("10.1.2.3", ["81.2.69.142"], "81.2.69.142"),
        ("10.1.2.3", ["81.2.69.142, 10.9.9.9"], "81.2.69.142"),
        ("10.1.2.3", ["198.51.100.1, 81.2.69.142, 10.9.9.9"], "81.2.69.142"),
        ("10.1.2.3", ["198.51.100.1", "81.2.69.142"], "81.2.69.142"),
        ("10.1.2.3", ["10.2.2.2, 10.3.3.3"], "10.2.2.2"),
        ("10.1.2.3", ["garbage, 81.2.69.142"], "81.2.69.142"),
        ("10.1.2.3", ["81.2.69.142, garbage"], "10.1.2.3"),
        ("10.1.2.3", [], "10.1.2.3"),
        ("::1", ["2001:218::1"], "2001:218::1"),
        ("::ffff:10.1.2.3", ["81.2.69.142"], "81.2.69.142"),
        ("::ffff:81.2.69.142", [], "81.2.69.142"),
        ("127.0.0.1", ["[2001:218::1]:443"], "2001:218::1"),
        ("127.0.0.1", ["81.2.69.142:5000"], "81.2.69.142"),
        (None, ["81.2.69.142"], None),
    ],
)
def test_client_address_rules(peer, forwarded_for, expected):
    assert client_address(peer, forwarded_for, TRUSTED) == expected


def test_no_trusted_proxy_ignores_header():
    assert client_address("127.0.0.1", ["81.2.69.142"], []) == "127.0.0.1"


def test_parse_networks_names_bad_value():
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks(["10.0.0.0/8", "10.0.0.0/33"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("81.2.69.142", "81.2.69.142"), ("::ffff:81.2.69.142", "81.2.69.142"), ("fe80::1%eth0", "fe80::1"), ("nonsense", None), ("", None)],
)
def test_parse_address(text, expected):
    address = parse_address(text)
    assert (None if address is None else str(address)) == expected


@pytest.fixture(scope="module")
def city_resolver():
    return Resolver(REGIONS, DEFAULT_ORDER, GeoDatabase(CITY))


@pytest.fixture(scope="module")
def country_resolver():
    return Resolver(REGIONS, DEFAULT_ORDER, GeoDatabase(COUNTRY))


@pytest.mark.parametrize(
    ("address", "reason", "country", "first_region"),
    [
        ("81.2.69.142", "located", "GB", "eu-central"),
        ("216.160.83.56", "located", "US", "us-east"),
        ("89.160.20.112", "located", "SE", "eu-central"),
        ("175.16.199.7", "located", "CN", "ap-southeast"),
        ("2001:218::1", "located", "JP", "ap-southeast"),
        ("::ffff:81.2.69.142", "located", "GB", "eu-central"),
        ("214.1.1.1", "no_coordinates", None, "us-east"),
        ("1.1.1.1", "not_found", None, "us-east"),
        ("127.0.0.1", "loopback", None, "us-east"),
        ("::1", "loopback", None, "us-east"),
        ("10.0.0.7", "private", None, "us-east"),
        ("192.168.1.1", "private", None, "us-east"),
        ("fd00::1", "private", None, "us-east"),
        ("169.254.1.1", "link_local", None, "us-east"),
        ("fe80::1", "link_local", None, "us-east"),
        ("100.64.0.1", "shared_address_space", None, "us-east"),
        ("224.0.0.1", "reserved", None, "us-east"),
        ("not an address", "invalid_address", None, "us-east"),
    ],
)
def test_city_database_routing(city_resolver, address, reason, country, first_region):
    located = city_resolver.locate(address, {})
    assert located["reason"] == reason
    assert (located["location"] or {}).get("country") == country
    assert located["regions"][0] == first_region
    assert sorted(located["regions"]) == sorted(DEFAULT_ORDER)


def test_city_location_has_coordinates(city_resolver):
    located = city_resolver.locate("81.2.69.142", {})
    assert located["location"]["latitude"] == pytest.approx(51.5142)
    assert located["location"]["longitude"] == pytest.approx(-0.0931)
    assert located["location"]["city"] == "London"
    assert located["location"]["accuracy"] == "city"


@pytest.mark.parametrize(
    ("address", "reason", "first_region"),
    [
        ("81.2.69.142", "located_by_country", "eu-central"),
        ("216.160.83.56", "located_by_country", "us-east"),
        ("2001:218::1", "located_by_country", "ap-southeast"),
        ("175.16.199.7", "not_found", "us-east"),
    ],
)
def test_country_database_routing(country_resolver, address, reason, first_region):
    located = country_resolver.locate(address, {})
    assert located["reason"] == reason
    assert located["regions"][0] == first_region


def test_country_location_is_country_centre(country_resolver):
    located = country_resolver.locate("81.2.69.142", {})
    assert located["location"]["accuracy"] == "country"
    assert located["location"]["country"] == "GB"


def test_no_database_gives_default_order():
    located = Resolver(REGIONS, ["ap-southeast", "us-east"]).locate("81.2.69.142", {})
    assert located["reason"] == "no_database"
    assert located["regions"] == ["ap-southeast", "us-east", "eu-central"]


def test_missing_address_gives_reason():
    located = Resolver(REGIONS, DEFAULT_ORDER).locate(None, {})
    assert located["reason"] == "no_address"
    assert located["client_ip"] is None


def test_unhealthy_regions_go_last(city_resolver):
    located = city_resolver.locate("81.2.69.142", {}, unhealthy={"eu-central"})
    assert located["regions"][-1] == "eu-central"
    assert located["regions"][0] != "eu-central"


def test_edges_follow_region_order(city_resolver):
    edges = {"us-east": ["ws://us/1"], "eu-central": ["ws://eu/1", "ws://eu/2"], "ap-southeast": ["ws://ap/1"]}
    located = city_resolver.locate("175.16.199.7", edges, unhealthy_edges={"ws://us/1"})
    assert located["edges"][0] == "ws://ap/1"
    assert located["edges"][-1] == "ws://us/1"
    assert len(located["edges"]) == 4


def test_great_circle_order_from_london():
    resolver = Resolver(REGIONS, DEFAULT_ORDER)
    from ama.geo import Location

    assert resolver.region_order(Location(51.5, -0.1)) == ["eu-central", "us-east", "ap-southeast"]


def test_atomic_replacement_is_reloaded(tmp_path):
    path = tmp_path / "geo.mmdb"
    shutil.copy(COUNTRY, path)
    now = [0.0]
    database = GeoDatabase(path, clock=lambda: now[0])
    resolver = Resolver(REGIONS, DEFAULT_ORDER, database)
    assert resolver.locate("175.16.199.7", {})["reason"] == "not_found"

    replacement = tmp_path / "geo.mmdb.new"
    shutil.copy(CITY, replacement)
    os.replace(replacement, path)
    assert resolver.locate("175.16.199.7", {})["reason"] == "not_found"
    now[0] += 10
    assert resolver.locate("175.16.199.7", {})["reason"] == "located"


def test_broken_replacement_keeps_open_database(tmp_path):
    path = tmp_path / "geo.mmdb"
    shutil.copy(CITY, path)
    now = [0.0]
    resolver = Resolver(REGIONS, DEFAULT_ORDER, GeoDatabase(path, clock=lambda: now[0]))
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database")
    os.replace(broken, path)
    now[0] += 10
    assert resolver.locate("81.2.69.142", {})["reason"] == "located"
