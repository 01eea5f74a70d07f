"""Tests of the topology plan (ama/plan.py) and room tokens (ama/tokens.py)."""

from __future__ import annotations

import copy
import json
import math
import stat
import time

import jwt
import pytest

from ama.plan import PLAN_VERSION, PlanError, View, default_plan, great_circle_km, home_order, load, validate
from ama.tokens import KEY_RETENTION_S, ALGORITHM, CLOCK_SKEW_S, ISSUER, REFRESH_GRACE_S, Claims, Signer, TokenError, Verifier

# -- plan ------------------------------------------------------------------------

FRANKFURT = (50.11, 8.68)
SINGAPORE = (1.35, 103.82)
ASHBURN = (39.04, -77.49)
PARIS = (48.86, 2.35)
TOKYO = (35.68, 139.69)
SAO_PAULO = (-23.55, -46.63)


@pytest.fixture(scope="module")
def plan() -> dict:
    return default_plan()


def edited(plan: dict) -> dict:
    return copy.deepcopy(plan)


def plan_error(plan: dict) -> str:
    with pytest.raises(PlanError) as info:
        validate(plan)
    return str(info.value)


def test_default_plan_validates(plan):
    validate(plan)

    assert plan["version"] == PLAN_VERSION
    assert plan["core_region"] == "us-east"


def test_default_plan_has_three_regions(plan):
    assert View(plan).region_names() == ["us-east", "eu-central", "ap-southeast"]


def test_default_plan_ports_distinct(plan):
    ports = View(plan).all_ports()

    assert len(ports) == len(set(ports))
    # core, then per region 4 NATS ports, 1 region service and 2 ports per edge.
    assert len(ports) == 1 + 3 * (4 + 1 + 2)


def test_default_plan_ports_valid(plan):
    for port in View(plan).all_ports():
        assert 1024 <= port <= 65535, port


def test_default_plan_two_edges_per_region():
    plan = default_plan(edges_per_region=2)
    ports = View(plan).all_ports()

    assert [len(region["edges"]) for region in plan["regions"]] == [2, 2, 2]
    assert len(ports) == len(set(ports))
    assert len(ports) == 1 + 3 * (4 + 1 + 4)


def test_default_plan_edge_processes_share_port():
    plan = default_plan(processes_per_edge=2)

    for region in plan["regions"]:
        edges = region["edges"]
        assert [edge["name"] for edge in edges] == [f"{region['name']}-edge-1-p1", f"{region['name']}-edge-1-p2"]
        assert edges[0]["ws_port"] == edges[1]["ws_port"]
        assert edges[0]["http_port"] != edges[1]["http_port"]
        assert [edge["reuse_port"] for edge in edges] == [True, True]


def test_shared_ws_port_needs_reuse_port():
    plan = default_plan(processes_per_edge=2)
    del plan["regions"][0]["edges"][1]["reuse_port"]

    with pytest.raises(PlanError, match="reuse_port"):
        validate(plan)


def test_default_plan_loopback_host(plan):
    assert plan["host"] == "127.0.0.1"
    assert View(plan).core_url() == f"http://127.0.0.1:{plan['core']['http_port']}"


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us-east", ["us-east", "eu-central", "ap-southeast"]),
        ("eu-central", ["eu-central", "us-east", "ap-southeast"]),
        ("ap-southeast", ["ap-southeast", "eu-central", "us-east"]),
    ],
)
def test_default_plan_edge_home_regions(plan, region, expected):
    edge = View(plan).region(region)["edges"][0]

    assert edge["home_regions"] == expected


def test_great_circle_quarter_equator():
    assert great_circle_km((0.0, 0.0), (0.0, 90.0)) == pytest.approx(6371.0 * math.pi / 2)


def test_great_circle_same_point():
    assert great_circle_km(FRANKFURT, FRANKFURT) == 0.0


def test_great_circle_frankfurt_singapore():
    # About 10,260 km by the haversine formula on a 6,371 km sphere.
    assert great_circle_km(FRANKFURT, SINGAPORE) == pytest.approx(10_260, rel=0.01)


def test_great_circle_symmetric():
    assert great_circle_km(ASHBURN, TOKYO) == pytest.approx(great_circle_km(TOKYO, ASHBURN))


def test_great_circle_across_antimeridian():
    # 179 E to 179 W on the equator is 2 degrees of longitude, not 358.
    assert great_circle_km((0.0, 179.0), (0.0, -179.0)) == pytest.approx(6371.0 * math.radians(2))


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (PARIS, ["eu-central", "us-east", "ap-southeast"]),
        (TOKYO, ["ap-southeast", "eu-central", "us-east"]),
        (SAO_PAULO, ["us-east", "eu-central", "ap-southeast"]),
    ],
    ids=["paris", "tokyo", "sao-paulo"],
)
def test_home_order_nearest_first(plan, location, expected):
    assert home_order(location, plan["regions"]) == expected


def test_home_order_ties_by_name():
    regions = [{"name": "zeta", "location": [10.0, 0.0]}, {"name": "alpha", "location": [-10.0, 0.0]}]

    assert home_order((0.0, 0.0), regions) == ["alpha", "zeta"]


def test_validate_rejects_duplicate_region_names(plan):
    broken = edited(plan)
    broken["regions"][1]["name"] = "us-east"

    message = plan_error(broken)

    assert message.startswith("plan.regions[].name must be unique")


def test_validate_rejects_names_equal_as_stream_names(plan):
    broken = edited(plan)
    broken["regions"][1]["name"] = "us_east"

    message = plan_error(broken)

    assert message.startswith("plan.regions[].name must stay unique with '-' read as '_'")


@pytest.mark.parametrize(
    "location",
    [[91.0, 0.0], [-90.5, 0.0], [0.0, 180.5], [0.0, -181.0], ["north", 0.0], [None, None]],
    ids=["lat-high", "lat-low", "lon-high", "lon-low", "lat-text", "none"],
)
def test_validate_rejects_bad_coordinates(plan, location):
    broken = edited(plan)
    broken["regions"][2]["location"] = location

    message = plan_error(broken)

    assert message == "plan.regions[ap-southeast].location must be [latitude -90..90, longitude -180..180]"


def test_validate_accepts_boundary_coordinates(plan):
    fine = edited(plan)
    fine["regions"][0]["location"] = [-90, 180]

    validate(fine)


def test_validate_rejects_unknown_core_region(plan):
    broken = edited(plan)
    broken["core_region"] = "mars-1"

    message = plan_error(broken)

    assert message.startswith("plan.core_region 'mars-1' is not one of the regions")


def test_validate_rejects_unknown_home_region(plan):
    broken = edited(plan)
    broken["regions"][0]["edges"][0]["home_regions"] = ["us-east", "mars-1"]

    message = plan_error(broken)

    assert message == "plan.regions[us-east].edges[us-east-edge-1].home_regions must name known regions"


def test_validate_rejects_empty_home_regions(plan):
    broken = edited(plan)
    broken["regions"][1]["edges"][0]["home_regions"] = []

    message = plan_error(broken)

    assert message == "plan.regions[eu-central].edges[eu-central-edge-1].home_regions must name known regions"


def test_validate_rejects_wrong_version(plan):
    broken = edited(plan)
    broken["version"] = 2

    message = plan_error(broken)

    assert message == "plan.version must be 1, not 2"


def test_validate_rejects_empty_regions(plan):
    broken = edited(plan)
    broken["regions"] = []

    message = plan_error(broken)

    assert message == "plan.regions must be a non-empty list"


def test_validate_rejects_region_name_with_dot(plan):
    broken = edited(plan)
    broken["regions"][0]["name"] = "us.east"

    message = plan_error(broken)

    assert message.startswith("plan.regions[].name:")


@pytest.mark.parametrize("kind", ["nats", "region_services", "edges"])
def test_validate_rejects_region_without_nodes(plan, kind):
    broken = edited(plan)
    broken["regions"][1][kind] = []

    message = plan_error(broken)

    assert message == f"plan.regions[eu-central].{kind} must list at least one node"


def test_load_round_trip(plan, tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))

    assert load(path) == plan


def test_load_rejects_invalid_json(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("{not json")

    with pytest.raises(PlanError) as info:
        load(path)

    assert str(info.value).startswith(f"cannot read plan {path}")


def test_load_rejects_missing_file(tmp_path):
    with pytest.raises(PlanError):
        load(tmp_path / "missing.json")


def test_view_region_unknown(plan):
    with pytest.raises(PlanError) as info:
        View(plan).region("mars-1")

    assert str(info.value) == "no region named 'mars-1' in the plan"


def test_view_nats_urls_in_order(plan):
    view = View(plan)
    eu_port = view.region("eu-central")["nats"][0]["client_port"]
    us_port = view.region("us-east")["nats"][0]["client_port"]

    urls = view.nats_urls_in_order(["eu-central", "us-east"])

    assert urls == [f"nats://127.0.0.1:{eu_port}", f"nats://127.0.0.1:{us_port}"]


def test_view_region_of_url(plan):
    view = View(plan)
    url = view.nats_urls("ap-southeast")[0]

    assert view.region_of_url(url) == "ap-southeast"
    assert view.region_of_url("nats://127.0.0.1:1") is None


# -- tokens ----------------------------------------------------------------------

NOW = 1_700_000_000


@pytest.fixture
def signer(tmp_path) -> Signer:
    return Signer.load_or_create(tmp_path / "keys" / "signing.json")


def token_error(verifier: Verifier, token: str) -> TokenError:
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    return info.value


def test_load_or_create_writes_key_file(tmp_path):
    path = tmp_path / "keys" / "signing.json"

    signer = Signer.load_or_create(path)

    stored = json.loads(path.read_text())
    assert stored["keys"][0]["kid"] == signer.key_id
    assert stored["keys"][0]["pem"].startswith("-----BEGIN PRIVATE KEY-----")


def test_rotation_keeps_old_key_verifiable(tmp_path):
    signer = Signer.load_or_create(tmp_path / "signing.json")
    old_token = signer.issue("u_0123456789abcdef", "room1", "audience", "Ann")

    new_key_id = signer.rotate()
    new_token = signer.issue("u_0123456789abcdef", "room1", "audience", "Ann")
    verifier = Verifier(signer.jwks())

    assert signer.key_id == new_key_id
    assert verifier.verify(old_token).user == "u_0123456789abcdef"
    assert verifier.verify(new_token).user == "u_0123456789abcdef"
    assert len(signer.jwks()["keys"]) == 2


def test_rotation_survives_reload(tmp_path):
    path = tmp_path / "signing.json"
    signer = Signer.load_or_create(path)
    new_key_id = signer.rotate()

    reloaded = Signer.load_or_create(path)

    assert reloaded.key_id == new_key_id
    assert [key["kid"] for key in reloaded.jwks()["keys"]] == [key["kid"] for key in signer.jwks()["keys"]]


def test_rotation_drops_keys_retired_past_retention(tmp_path):
    signer = Signer.load_or_create(tmp_path / "signing.json")
    first = signer.key_id
    now = time.time()

    signer.rotate(now=now)
    assert first in {key["kid"] for key in signer.jwks()["keys"]}

    signer.rotate(now=now + KEY_RETENTION_S + 1)
    assert first not in {key["kid"] for key in signer.jwks()["keys"]}


def test_rotation_keeps_long_lived_key_just_retired(tmp_path):
    signer = Signer.load_or_create(tmp_path / "signing.json")
    first = signer.key_id

    signer.rotate(now=time.time() + 10 * KEY_RETENTION_S)

    assert first in {key["kid"] for key in signer.jwks()["keys"]}


def test_load_or_create_key_file_private(tmp_path):
    path = tmp_path / "keys" / "signing.json"

    Signer.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_or_create_reloads_same_key(tmp_path):
    path = tmp_path / "keys" / "signing.json"
    created = Signer.load_or_create(path)

    reloaded = Signer.load_or_create(path)

    assert reloaded.key_id == created.key_id
    assert reloaded.jwks() == created.jwks()


def test_reloaded_key_verifies_old_token(tmp_path):
    path = tmp_path / "keys" / "signing.json"
    token = Signer.load_or_create(path).issue("user-ann", "room-1", "audience", "Ann")

    verifier = Verifier(Signer.load_or_create(path).jwks())

    assert verifier.verify(token).user == "user-ann"


def test_new_key_ids_differ(tmp_path):
    first = Signer.load_or_create(tmp_path / "a.json")
    second = Signer.load_or_create(tmp_path / "b.json")

    assert first.key_id != second.key_id


def test_issue_verify_round_trip(signer):
    token = signer.issue("user-ann", "room-1", "moderator", "Ann", now=time.time(), ttl_s=600)
    verifier = Verifier(signer.jwks())

    claims = verifier.verify(token)

    assert claims == Claims("user-ann", "room-1", "moderator", "Ann", claims.expires_at)


def test_issue_sets_expiry_from_ttl(signer):
    now = time.time()
    token = signer.issue("user-ann", "room-1", "audience", "Ann", now=now, ttl_s=600)

    claims = Verifier(signer.jwks()).verify(token)

    assert claims.expires_at == int(now) + 600


def test_issue_header_names_key(signer):
    token = signer.issue("user-ann", "room-1", "host", "Ann")

    header = jwt.get_unverified_header(token)

    assert header["kid"] == signer.key_id
    assert header["alg"] == ALGORITHM


def test_issue_claims(signer):
    token = signer.issue("user-ann", "room-1", "host", "Ann", now=NOW, ttl_s=60)

    payload = jwt.decode(token, options={"verify_signature": False})

    assert payload == {"sub": "user-ann", "room": "room-1", "role": "host", "name": "Ann", "iat": NOW, "exp": NOW + 60, "iss": ISSUER}


def test_issue_rejects_unknown_role(signer):
    with pytest.raises(ValueError):
        signer.issue("user-ann", "room-1", "admin", "Ann")


def test_verify_expired_token(signer):
    token = signer.issue("user-ann", "room-1", "audience", "Ann", now=NOW, ttl_s=60)

    error = token_error(Verifier(signer.jwks()), token)

    assert error.code == "token_expired"


def test_verify_accepts_expiry_within_clock_skew(signer):
    now = time.time()
    token = signer.issue("user-ann", "room-1", "audience", "Ann", now=now - 70, ttl_s=60)

    claims = Verifier(signer.jwks()).verify(token)

    assert claims.user == "user-ann"


def test_verify_expired_beyond_clock_skew(signer):
    now = time.time()
    token = signer.issue("user-ann", "room-1", "audience", "Ann", now=now - 60 - CLOCK_SKEW_S - 30, ttl_s=60)

    error = token_error(Verifier(signer.jwks()), token)

    assert error.code == "token_expired"


def test_verify_grace_accepts_recently_expired(signer):
    token = signer.issue("user-ann", "room-1", "audience", "Ann", now=time.time() - 3600, ttl_s=60)

    claims = Verifier(signer.jwks()).verify(token, expired_grace_s=REFRESH_GRACE_S)

    assert claims.user == "user-ann"


def test_verify_grace_rejects_long_expired(signer):
    token = signer.issue("user-ann", "room-1", "audience", "Ann", now=time.time() - REFRESH_GRACE_S - 3600, ttl_s=60)

    with pytest.raises(TokenError) as info:
        Verifier(signer.jwks()).verify(token, expired_grace_s=REFRESH_GRACE_S)
    error = info.value

    assert error.code == "token_expired"


def test_verify_tampered_signature(signer):
    token = signer.issue("user-ann", "room-1", "audience", "Ann")
    header, payload, signature = token.split(".")
    # Change the first signature character: every one of its bits is signature data.
    tampered = ".".join([header, payload, ("B" if signature[0] == "A" else "A") + signature[1:]])

    error = token_error(Verifier(signer.jwks()), tampered)

    assert error.code == "invalid_token"


def test_verify_tampered_payload(signer):
    token = signer.issue("user-ann", "room-1", "audience", "Ann")
    header, _, signature = token.split(".")
    forged = jwt.utils.base64url_encode(json.dumps({"sub": "user-ann", "room": "room-1", "role": "host", "name": "Ann", "iat": int(time.time()), "exp": int(time.time()) + 600, "iss": ISSUER}).encode()).decode()

    error = token_error(Verifier(signer.jwks()), ".".join([header, forged, signature]))

    assert error.code == "invalid_token"


def test_verify_unknown_key_id(signer, tmp_path):
    other = Signer.load_or_create(tmp_path / "other.json")
    token = other.issue("user-ann", "room-1", "audience", "Ann")
    verifier = Verifier(signer.jwks())

    error = token_error(verifier, token)

    assert error.code == "invalid_token"
    assert verifier.knows(token) is False


def test_verify_malformed_token(signer):
    error = token_error(Verifier(signer.jwks()), "not-a-token")

    assert error.code == "invalid_token"


def test_verify_wrong_issuer(signer):
    claims = {"sub": "user-ann", "room": "room-1", "role": "audience", "iat": int(time.time()), "exp": int(time.time()) + 600, "iss": "someone-else"}
    token = jwt.encode(claims, signer.key, algorithm=ALGORITHM, headers={"kid": signer.key_id})

    error = token_error(Verifier(signer.jwks()), token)

    assert error.code == "invalid_token"


@pytest.mark.parametrize("role", ["admin", None])
def test_verify_rejects_invalid_role(signer, role):
    claims = {"sub": "user-ann", "room": "room-1", "role": role, "iat": int(time.time()), "exp": int(time.time()) + 600, "iss": ISSUER}
    token = jwt.encode(claims, signer.key, algorithm=ALGORITHM, headers={"kid": signer.key_id})

    error = token_error(Verifier(signer.jwks()), token)

    assert error.code == "invalid_token"


def test_verify_rejects_token_without_exp(signer):
    claims = {"sub": "user-ann", "room": "room-1", "role": "audience", "iat": int(time.time()), "iss": ISSUER}
    token = jwt.encode(claims, signer.key, algorithm=ALGORITHM, headers={"kid": signer.key_id})

    error = token_error(Verifier(signer.jwks()), token)

    assert error.code == "invalid_token"


def test_verifier_knows_own_key(signer):
    token = signer.issue("user-ann", "room-1", "audience", "Ann")

    assert Verifier(signer.jwks()).knows(token) is True


def test_verifier_load_replaces_keys(signer, tmp_path):
    token = signer.issue("user-ann", "room-1", "audience", "Ann")
    verifier = Verifier(signer.jwks())

    verifier.load(Signer.load_or_create(tmp_path / "rotated.json").jwks())

    assert token_error(verifier, token).code == "invalid_token"


def test_empty_verifier_rejects_token(signer):
    token = signer.issue("user-ann", "room-1", "audience", "Ann")

    assert token_error(Verifier(), token).code == "invalid_token"


def test_jwks_public_key_fields(signer):
    keys = signer.jwks()["keys"]

    assert len(keys) == 1
    assert keys[0]["kid"] == signer.key_id
    assert keys[0]["alg"] == "EdDSA"
    assert keys[0]["use"] == "sig"
    assert keys[0]["kty"] == "OKP"
    assert keys[0]["crv"] == "Ed25519"


def test_jwks_has_no_private_part(signer):
    key = signer.jwks()["keys"][0]

    assert "d" not in key


def test_node_hosts_override_plan_host():
    plan = default_plan()
    plan["bind"] = "0.0.0.0"
    region = plan["regions"][0]
    region["nats"][0]["host"] = "nats-1.internal"
    region["edges"][0]["host"] = "edge-1.internal"
    plan["core"]["host"] = "core.internal"
    view = View(plan)

    assert view.nats_urls(region["name"]) == [f"nats://nats-1.internal:{region['nats'][0]['client_port']}"]
    assert view.edge_ws_url(region["edges"][0]) == f"ws://edge-1.internal:{region['edges'][0]['ws_port']}/v1/ws"
    assert view.core_url() == f"http://core.internal:{plan['core']['http_port']}"
    assert view.bind_host(region["edges"][0]) == "0.0.0.0"
    assert view.edge_ws_url(plan["regions"][1]["edges"][0]).startswith("ws://127.0.0.1:")


def test_nats_config_binds_wildcard_and_advertises_node_host(tmp_path):
    from ama.natsconf import render

    plan = default_plan()
    plan["bind"] = "0.0.0.0"
    for region in plan["regions"]:
        for server in region["nats"]:
            server["host"] = f"{server['name']}.internal"
    view = View(plan)
    server = plan["regions"][0]["nats"][0]

    config = render(view, plan["regions"][0]["name"], server, tmp_path)

    assert f'listen: "0.0.0.0:{server["client_port"]}"' in config
    assert f'client_advertise: "{server["name"]}.internal:{server["client_port"]}"' in config
    assert f'advertise: "{server["name"]}.internal:{server["gateway_port"]}"' in config
    other = plan["regions"][1]["nats"][0]
    assert f"nats://{other['name']}.internal:{other['gateway_port']}" in config


def test_edge_urls_without_public_urls():
    plan = default_plan()
    edge = plan["regions"][0]["edges"][0]
    edge["host"] = "edge-1.internal"
    view = View(plan)

    assert view.edge_ws_url(edge) == f"ws://edge-1.internal:{edge['ws_port']}/v1/ws"
    assert view.edge_http_url(edge) == f"http://edge-1.internal:{edge['http_port']}"


def test_edge_urls_prefer_public_urls():
    plan = default_plan()
    edge = plan["regions"][0]["edges"][0]
    edge["host"] = "edge-1.internal"
    edge["public_ws_url"] = "wss://us-east.ama.example.com/v1/ws"
    edge["public_http_url"] = "https://us-east.ama.example.com"
    view = View(plan)

    assert view.edge_ws_url(edge) == "wss://us-east.ama.example.com/v1/ws"
    assert view.edge_http_url(edge) == "https://us-east.ama.example.com"
    assert view.edge_ws_urls(plan["regions"][0]["name"]) == ["wss://us-east.ama.example.com/v1/ws"]
    other = plan["regions"][1]["edges"][0]
    assert view.edge_ws_url(other) == f"ws://127.0.0.1:{other['ws_port']}/v1/ws"


def test_edge_origins_without_public_url():
    from edge.node import edge_origins

    plan = default_plan()
    edge = plan["regions"][0]["edges"][0]
    edge["host"] = "edge-1.internal"
    loopback_edge = plan["regions"][1]["edges"][0]
    view = View(plan)

    assert edge_origins(view, edge) == [f"http://edge-1.internal:{edge['http_port']}"]
    assert edge_origins(view, loopback_edge) == [
        f"http://127.0.0.1:{loopback_edge['http_port']}",
        f"http://localhost:{loopback_edge['http_port']}",
        f"http://[::1]:{loopback_edge['http_port']}",
    ]


def test_edge_origins_include_public_origin():
    from edge.node import edge_origins

    plan = default_plan()
    edge = plan["regions"][0]["edges"][0]
    edge["host"] = "edge-1.internal"
    edge["public_http_url"] = "https://US-East.ama.example.com/app/"
    view = View(plan)

    origins = edge_origins(view, edge)

    assert "https://us-east.ama.example.com" in origins
    assert f"http://edge-1.internal:{edge['http_port']}" in origins
    assert len(origins) == 2


@pytest.mark.parametrize(
    ("public_http_url", "origin"),
    [
        ("https://ama.example.com:443", "https://ama.example.com"),
        ("http://ama.example.com:80/", "http://ama.example.com"),
        ("https://ama.example.com:8443/path", "https://ama.example.com:8443"),
        ("http://[2001:db8::1]:8080", "http://[2001:db8::1]:8080"),
    ],
)
def test_edge_origins_public_origin_ports(public_http_url, origin):
    from edge.node import edge_origins

    plan = default_plan()
    edge = plan["regions"][0]["edges"][0]
    edge["public_http_url"] = public_http_url
    view = View(plan)

    assert origin in edge_origins(view, edge)
