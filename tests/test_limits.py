"""The edge's rate limits (pure: time passed in)."""

from __future__ import annotations

from edge.limits import FLOOD_CLOSE_S, FLOOD_QUIET_S, MAX_REJECTED_IN_A_FLOOD, Flood


def test_flood_burst_keeps_socket():
    flood = Flood()
    results = [flood.reject(10.0) for _ in range(1_000)]
    assert not any(close for close, _ in results)
    assert [tell for _, tell in results].count(True) == 1


def test_flood_sustained_closes():
    flood = Flood()
    now = 0.0
    while not flood.reject(now)[0]:
        now += 0.01
        assert now < FLOOD_CLOSE_S + 1
    assert now >= FLOOD_CLOSE_S


def test_flood_errors_once_per_second():
    flood = Flood()
    errors_sent = sum(flood.reject(step * 0.1)[1] for step in range(40))
    assert errors_sent == 4


def test_flood_ends_after_quiet_second():
    flood = Flood()
    now = 0.0
    # Bursts every 1.5 s: each is its own flood, so none lasts 5 s.
    for _ in range(10):
        for _ in range(MAX_REJECTED_IN_A_FLOOD):
            assert flood.reject(now)[0] is False
        now += FLOOD_QUIET_S + 0.5


def test_flood_sparse_rejections_stay_open():
    flood = Flood()
    closes = [flood.reject(step * 0.9)[0] for step in range(MAX_REJECTED_IN_A_FLOOD - 1)]
    assert not any(closes)


def test_stall_guard_marks_sockets_across_stall():
    from edge.server import STALL_CHECK_S, STALL_S, StallGuard

    guard = StallGuard(now=0.0)
    assert guard.check(STALL_CHECK_S) is False
    assert not guard.stale(joined_at=0.1, now=0.3)
    # The process is stopped for 10 s; frames read before the next check are stale.
    resumed = STALL_CHECK_S + 10.0
    assert guard.stale(joined_at=0.1, now=resumed)
    assert guard.check(resumed + 0.01) is True
    # After the check: sockets from before the stall stay stale, new ones are not.
    assert guard.stale(joined_at=0.1, now=resumed + 0.1)
    assert not guard.stale(joined_at=resumed + 0.05, now=resumed + 0.1)
    # A late check that stays under STALL_S is not a stall.
    assert guard.check(resumed + 0.01 + STALL_S * 0.9) is False
