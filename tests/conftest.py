from __future__ import annotations

import pytest

from pathlib import Path

from tests.harness import ClusterApi, UpProcess

GEOIP_CITY = Path(__file__).parent / "data" / "geoip" / "GeoIP2-City-Test.mmdb"
# Loopback is a trusted proxy here, so tests can pose as clients anywhere
# with X-Forwarded-For.
GEO_OPTIONS = ["--geoip", str(GEOIP_CITY), "--trusted-proxy", "127.0.0.0/8", "--trusted-proxy", "::1/128"]


@pytest.fixture(scope="session")
def up(tmp_path_factory):
    """A three-region cluster started with ``ama up``, shared by the integration tests."""
    process = UpProcess(tmp_path_factory.mktemp("cluster") / "data", GEO_OPTIONS)
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def cluster(up) -> ClusterApi:
    return ClusterApi(up.info)
