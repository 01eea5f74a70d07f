"""The drill tool: its history checker (pure), and real drills against a cluster started by ``ama up``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ama.drill.history import History, Sent, check, percentile
from ama.drill.run import RESTORE_ALLOWANCE_S, DrillError, DrillOptions, intent_budget, schedule, validate
from tests.harness import UpProcess, namespaces_unavailable, run_drill, summary


def vote(intent_id: str, user: str, question: str, value: int, sent_at: float, acked: bool = True) -> Sent:
    entry = Sent(intent_id, "vote", user, question, value, sent_at, "during")
    if acked:
        entry.accepted_at = entry.committed_at = sent_at + 0.01
    return entry


def history_of(*entries: Sent) -> History:
    history = History()
    for entry in entries:
        history.sent(entry)
    return history


def view(question: str, up: int, down: int) -> dict:
    return {"id": question, "up": up, "down": down}


def test_last_vote_of_each_user_counts():
    history = history_of(vote("1", "ann", "q", 1, 1.0), vote("2", "ann", "q", -1, 2.0), vote("3", "bob", "q", 1, 1.5))
    assert history.expected_votes() == {("ann", "q"): -1, ("bob", "q"): 1}
    assert history.expected_totals() == {"q": (1, 1)}


def test_check_passes_matching_replicas():
    history = history_of(vote("1", "ann", "q", 1, 1.0), vote("2", "bob", "q", 1, 1.0))
    verdict = check(history, {"core": [view("q", 2, 0)], "edge": [view("q", 2, 0)]}, {"ann": {"q": 1}, "bob": {"q": 1}})
    assert verdict.lost == 0
    assert verdict.duplicated == 0
    assert verdict.problems == []


def test_check_counts_lost_vote():
    history = history_of(vote("1", "ann", "q", 1, 1.0), vote("2", "bob", "q", 1, 1.0))
    verdict = check(history, {"core": [view("q", 1, 0)]}, {"ann": {"q": 1}, "bob": {"q": 1}})
    assert verdict.lost == 1
    assert verdict.duplicated == 0


def test_check_counts_duplicated_vote():
    history = history_of(vote("1", "ann", "q", 1, 1.0))
    verdict = check(history, {"core": [view("q", 2, 0)]}, {"ann": {"q": 1}})
    assert verdict.duplicated == 1


def test_check_counts_missing_and_repeated_questions():
    ask = Sent("q", "ask", "ann", "q", 0, 1.0, "before", accepted_at=1.1, committed_at=1.2)
    history = history_of(ask)
    assert check(history, {"core": []}, {}).lost == 1
    assert check(history, {"core": [view("q", 0, 0), view("q", 0, 0)]}, {}).duplicated == 1


def test_check_counts_wrong_own_vote():
    history = history_of(vote("1", "ann", "q", -1, 1.0))
    verdict = check(history, {"core": [view("q", 0, 1)]}, {"ann": {"q": 1}})
    assert verdict.lost == 1


def test_unacknowledged_intents_are_counted():
    history = history_of(vote("1", "ann", "q", 1, 1.0, acked=False))
    assert check(history, {"core": [view("q", 1, 0)]}, {"ann": {"q": 1}}).unacknowledged == 1


def test_percentile_picks_nearest_rank():
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    assert percentile([], 0.5) is None


def test_random_schedule_draws_partitions_only_with_namespaces():
    options = DrillOptions("random", "", Path("data"), random_faults=40, seed=5)
    regions = ["us-east", "eu-central"]
    assert "partition-region" not in {fault for fault, _, _ in schedule(options, regions)}
    drawn = schedule(options, regions, can_partition=True)
    assert "partition-region" in {fault for fault, _, _ in drawn}
    assert all(not with_edges for fault, _, with_edges in drawn if fault == "partition-region")


def test_intent_budget_covers_every_phase_and_restore():
    options = DrillOptions("kill-region", "us-east", Path("data"), clients_per_region=10, before_s=5, hold_s=10, after_s=5)
    seconds = 5 + 10 + 5 + RESTORE_ALLOWANCE_S
    assert intent_budget(options, regions=3) == int(1.2 * 30 * seconds / options.interval_s)


def test_intent_budget_counts_random_faults_and_gaps():
    options = DrillOptions("random", "", Path("data"), clients_per_region=1, before_s=0, hold_s=1, after_s=0, random_faults=3, gap_s=2)
    seconds = 3 * (1 + RESTORE_ALLOWANCE_S) + 2 * 2
    assert intent_budget(options, regions=1) == int(1.2 * seconds / options.interval_s)


def test_intent_budget_takes_an_explicit_bound():
    options = DrillOptions("kill-core", "core", Path("data"), max_intents=7)
    assert intent_budget(options, regions=3) == 7


def test_partition_needs_a_cluster_with_namespaces():
    info = {"regions": {"us-east": {}, "eu-central": {}}, "netns": None}
    with pytest.raises(DrillError, match="ama up --netns"):
        validate(DrillOptions("partition-region", "us-east", Path("data")), info)
    info["netns"] = {"regions": {}}
    with pytest.raises(DrillError, match="--with-edges does not apply"):
        validate(DrillOptions("partition-region", "us-east", Path("data"), with_edges=True), info)
    with pytest.raises(DrillError, match="unknown region 'mars'"):
        validate(DrillOptions("partition-region", "mars", Path("data")), info)


def test_kill_stream_leader_needs_three_servers():
    info = {"regions": {"us-east": {"pids": {"nats": [11]}}}}
    with pytest.raises(DrillError, match="1 nats-server.*--nats-per-region 3"):
        validate(DrillOptions("kill-stream-leader", "us-east", Path("data")), info)


@pytest.fixture(scope="module")
def drill_cluster(tmp_path_factory):
    process = UpProcess(tmp_path_factory.mktemp("drill") / "data")
    try:
        process.start()
        yield process
    finally:
        process.stop()


REPORT_FIELDS = {
    "fault", "target", "intents_sent", "intents_acked", "intents_committed", "lost", "duplicated", "converged",
    "detect_s", "rehome_s", "converge_s", "client_reconnects", "p99_ms_before", "p99_ms_during", "p99_ms_after",
}


@pytest.mark.cluster
def test_kill_region_drill_loses_nothing(drill_cluster):
    status, report = run_drill(drill_cluster, "kill-region", "us-east")
    assert REPORT_FIELDS <= set(report)
    assert status == 0, summary(report)
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["converged"] is True
    assert report["intents_committed"] == report["intents_sent"]
    assert report["rehome_s"] is not None and report["rehome_s"] < 2.0


@pytest.mark.cluster
def test_hung_edges_drill_moves_clients_and_replays_nothing(drill_cluster):
    # Clients give up on a silent edge after 4 s. The resumed edge must then
    # drop the frames they left queued there, or old votes would be applied
    # after newer ones.
    status, report = run_drill(drill_cluster, "hang-region", "eu-central", "--with-edges", "--hold", "7")
    assert status == 0, summary(report)
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["converged"] is True
    assert report["client_reconnects"] >= 5
    assert report["rehome_s"] is not None and report["rehome_s"] < 5.0


@pytest.mark.cluster
def test_random_faults_drill_loses_nothing(drill_cluster):
    status, report = run_drill(drill_cluster, "random", "--faults", "2", "--seed", "3", "--gap", "2")
    assert status == 0, summary(report)
    assert len(report["faults"]) == 2
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["converged"] is True


@pytest.mark.cluster
def test_drill_rejects_unknown_region(drill_cluster):
    argv = [sys.executable, "-m", "ama.cli", "drill", "kill-region", "mars", "--data-dir", str(drill_cluster.data_dir)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown region 'mars'" in result.stderr


@pytest.mark.skipif(namespaces_unavailable() is not None, reason=f"ama up --netns cannot run here: {namespaces_unavailable()}")
def test_up_netns_rejects_plain_plan(tmp_path):
    from ama.supervisor import UpError, prepare_plan

    prepare_plan(tmp_path, None)
    with pytest.raises(UpError, match="made without --netns; use a new --data-dir"):
        prepare_plan(tmp_path, None, use_netns=True)
    with pytest.raises(UpError, match="--netns applies to the default plan only"):
        prepare_plan(tmp_path, tmp_path / "plan.json", use_netns=True)
