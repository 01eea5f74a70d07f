from __future__ import annotations

import pytest

from tests.harness import ClusterApi, UpProcess


@pytest.fixture(scope="session")
def up(tmp_path_factory):
    """A three-region cluster started with ``ama up``, shared by the integration tests."""
    process = UpProcess(tmp_path_factory.mktemp("cluster") / "data")
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def cluster(up) -> ClusterApi:
    return ClusterApi(up.info)
