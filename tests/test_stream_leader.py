"""Losing the nats-server that leads a region's stream loses nothing acknowledged."""

from __future__ import annotations

import json

import pytest

from ama import plan as plans
from tests.harness import UpProcess, run_drill, summary


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("replicated")
    plan = directory / "plan.json"
    plan.write_text(json.dumps(plans.default_plan(nats_per_region=3)))
    process = UpProcess(directory / "data", ["--plan", str(plan)])
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.mark.cluster
def test_kill_stream_leader_drill_loses_nothing(replicated_cluster):
    status, report = run_drill(replicated_cluster, "kill-stream-leader", "us-east", "--hold", "7")
    assert status == 0, summary(report)
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["converged"] is True
    assert report["intents_committed"] == report["intents_sent"]
    # Another server of the region took the stream over while the killed one was down.
    assert report["detect_s"] is not None
