"""Tests of ``ama bench``: the pure parts exactly, the lean client against a real server, and one tiny fanout run."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.server import serve

from ama.bench import report
from ama.bench.command import add_parser, combine, resolve
from ama.bench.dialects import (
    HocuspocusDialect,
    JsonDialect,
    YjsDialect,
    read_var_bytes,
    read_var_uint,
    sync_message,
    write_var_uint,
)
from ama.bench.profile import summarize
from ama.bench.stats import LatencyHistogram, fit_line, latencies_from_counts, percentile
from ama.bench.wsclient import FrameParser, accept_key, encode_frame, mask, open_client

# -- percentiles and histograms ------------------------------------------------------------


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 100) == 100
    assert percentile([7.0], 50) == 7.0


def test_percentile_unsorted_input():
    assert percentile([5, 1, 4, 2, 3], 50) == 3


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 0)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_histogram_within_one_percent():
    rng = random.Random(7)
    values = [rng.lognormvariate(2.5, 1.0) for _ in range(20000)]
    histogram = LatencyHistogram()
    histogram.add_all(values)
    for p in (50, 90, 99, 99.9):
        exact = percentile(values, p)
        assert abs(histogram.percentile(p) - exact) <= 0.011 * exact, p
    assert histogram.count == 20000
    assert histogram.max_ms == max(values)
    assert histogram.percentile(100) == max(values)


def test_histogram_merge_equals_one_histogram():
    values = [0.5 * i for i in range(1, 1001)]
    whole, first, second = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    whole.add_all(values)
    first.add_all(values[:300])
    second.add_all(values[300:])
    first.merge(second)
    assert first.buckets == whole.buckets
    assert first.count == whole.count
    assert first.min_ms == whole.min_ms
    assert first.max_ms == whole.max_ms
    assert math.isclose(first.total_ms, whole.total_ms)


def test_histogram_dict_round_trip_through_json():
    histogram = LatencyHistogram()
    histogram.add_all([1.0, 2.0, 3.0, 250.0])
    copy = LatencyHistogram.from_dict(json.loads(json.dumps(histogram.to_dict())))
    assert copy == histogram


def test_histogram_summary_of_empty():
    summary = LatencyHistogram().summary()
    assert summary["samples"] == 0
    assert summary["p99_ms"] is None


def test_histogram_sub_microsecond_values():
    histogram = LatencyHistogram()
    histogram.add_all([0.0, 0.0005, 0.002])
    assert histogram.percentile(50) == 0.001
    assert histogram.percentile(100) == 0.002


def test_latencies_from_counts_match_nth_send():
    sent = [10.000, 10.005, 10.010]
    seen = [10.012, 10.012, 10.020]
    assert [round(ms, 3) for ms in latencies_from_counts(sent, seen)] == [12.0, 7.0, 10.0]


def test_latencies_from_counts_ignores_unseen():
    assert len(latencies_from_counts([1.0, 2.0, 3.0], [1.5])) == 1


# -- RSS slope fit -------------------------------------------------------------------------


def test_fit_line_exact_slope():
    xs = [1000, 2000, 3000, 4000, 5000]
    ys = [50_000_000 + 12_288 * x for x in xs]
    fit = fit_line(xs, ys)
    assert math.isclose(fit.slope, 12_288)
    assert math.isclose(fit.intercept, 50_000_000)
    assert math.isclose(fit.r_squared, 1.0)


def test_fit_line_noisy_slope():
    rng = random.Random(3)
    xs = list(range(0, 10001, 1000))
    ys = [40e6 + 15_000 * x + rng.uniform(-2e5, 2e5) for x in xs]
    fit = fit_line(xs, ys)
    assert abs(fit.slope - 15_000) < 100
    assert 0.99 < fit.r_squared <= 1.0


def test_fit_line_needs_two_x_values():
    with pytest.raises(ValueError):
        fit_line([5, 5], [1, 2])
    with pytest.raises(ValueError):
        fit_line([1, 2], [1])


# -- ratios, targets and the JSON document -------------------------------------------------


def fanout_results() -> dict:
    return {
        "ama": {"frames_per_cpu_second": 90_000, "votes_shown_per_cpu_second": 1_000_000, "p50_ms": 40.0, "p99_ms": 80.0, "p999_ms": 120.0,
                "_histogram": LatencyHistogram()},
        "node-ws": {"frames_per_cpu_second": 120_000, "votes_shown_per_cpu_second": 120_000, "p50_ms": 20.0, "p99_ms": 0.0, "p999_ms": None},
        "hocuspocus": {"error": "did not start"},
    }


def test_ratio_rounding_and_missing():
    assert report.ratio(3.0, 4.0) == 0.75
    assert report.ratio(None, 4.0) is None
    assert report.ratio(3.0, None) is None
    assert report.ratio(3.0, 0) is None


def test_ratio_table_skips_failed_peers():
    table = report.ratios("fanout", fanout_results())
    assert list(table) == ["node-ws"]
    assert table["node-ws"]["frames_per_cpu_second"] == 0.75
    assert table["node-ws"]["p50_ms"] == 2.0
    assert table["node-ws"]["p99_ms"] is None
    assert table["node-ws"]["p999_ms"] is None


def test_fanout_targets():
    checks = report.targets("fanout", fanout_results(), {"watchers": 5000, "rate_per_s": 200})
    frames, p99 = checks
    assert frames["value"] == 0.75
    assert frames["met"] is False
    assert p99["value"] == 80.0
    assert p99["met"] is True


def test_fanout_p99_target_below_load_is_not_judged():
    checks = report.targets("fanout", fanout_results(), {"watchers": 100, "rate_per_s": 20})
    assert checks[1]["met"] is None
    assert "--watchers 5000" in checks[1]["note"]


def test_idle_target():
    (check,) = report.targets("idle", {"ama": {"kb_per_connection": 15.5}}, {})
    assert check["met"] is True
    (check,) = report.targets("idle", {"ama": {"kb_per_connection": 16.5}}, {})
    assert check["met"] is False


def test_document_shape():
    doc = report.document("fanout", fanout_results(), {"watchers": 5000, "rate_per_s": 200}, {"cpus": 2})
    assert doc["scenario"] == "fanout"
    assert set(doc["results"]) == {"ama", "node-ws", "hocuspocus"}
    assert "_histogram" not in doc["results"]["ama"]
    assert doc["results"]["ama"]["p99_ms"] == 80.0
    assert doc["ratios"]["node-ws"]["frames_per_cpu_second"] == 0.75
    json.dumps(doc)


def test_table_lists_systems_and_targets():
    text = report.table(report.document("fanout", fanout_results(), {"watchers": 5000, "rate_per_s": 200}, {}))
    header = text.splitlines()[2]
    assert header.split() == ["figure", "ama", "node-ws", "hocuspocus"]
    assert "MISSED" in text
    assert "90,000" in text


def test_combine_takes_medians():
    combined = combine([{"p99_ms": 10.0, "note": "a"}, {"p99_ms": 30.0, "note": "b"}, {"p99_ms": 20.0, "note": "c"}])
    assert combined["p99_ms"] == 20.0
    assert combined["note"] == "c"
    assert combined["rounds"] == 3


def test_combine_keeps_single_error():
    assert combine([{"error": "boom"}]) == {"error": "boom"}


def test_write_plot_makes_png(tmp_path):
    import matplotlib  # noqa: F401 - in the bench extra, which the test setup installs
    histogram = LatencyHistogram()
    histogram.add_all([1.0, 2.0, 5.0, 50.0])
    path = tmp_path / "plot.png"
    report.write_plot(path, "fanout", {"ama": histogram}, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- options -------------------------------------------------------------------------------


def parse(argv: list[str]):
    parser = argparse.ArgumentParser(prog="ama")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def test_resolve_quick_defaults_and_overrides():
    settings = resolve(parse(["fanout", "--quick", "--watchers", "20"]))
    assert settings["watchers"] == 20
    assert settings["rate"] == 200.0
    assert settings["duration"] == 5.0


def test_resolve_rejects_non_positive():
    with pytest.raises(ValueError, match="--rate"):
        resolve(parse(["fanout", "--rate", "0"]))


# -- protocol encoding ---------------------------------------------------------------------


def test_accept_key_matches_rfc_6455_example():
    # RFC 6455 section 1.3.
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_mask_is_its_own_inverse():
    key = b"\x01\x02\x03\x04"
    payload = b"hello, websocket"
    assert mask(mask(payload, key), key) == payload
    assert mask(b"", key) == b""


def test_frame_parser_reads_split_and_fragmented_frames():
    def server_frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
        return bytes([(0x80 if final else 0) | opcode, len(payload)]) + payload

    data = server_frame(1, b"first") + server_frame(1, b"par", final=False) + server_frame(0, b"ts") + server_frame(9, b"p")
    data += bytes([0x82, 126]) + (300).to_bytes(2, "big") + b"x" * 300
    parser = FrameParser()
    messages = []
    for i in range(0, len(data), 7):
        messages += parser.feed(data[i : i + 7])
    assert messages == [(1, b"first"), (1, b"parts"), (9, b"p"), (2, b"x" * 300)]


def test_encode_frame_is_masked():
    frame = encode_frame(1, b"abcde", b"\x00\x00\x00\x01")
    assert frame[0] == 0x81
    assert frame[1] == 0x80 | 5
    assert frame[2:6] == b"\x00\x00\x00\x01"
    assert frame[6:] == b"abc" + bytes([ord("d") ^ 1]) + b"e"


def test_var_uint_round_trip():
    for number in (0, 1, 127, 128, 300, 2**21, 2**35):
        encoded = write_var_uint(number)
        assert read_var_uint(encoded, 0) == (number, len(encoded))


def test_sync_message_layout():
    message = sync_message(2, b"\x01\x02", prefix=b"\x03doc")
    assert message == b"\x03doc" + b"\x00\x02\x02\x01\x02"
    assert read_var_bytes(message, 0) == (b"doc", 4)


class FakeClient:
    def __init__(self):
        from ama.bench.dialects import ClientState

        self.state = ClientState()
        self.sent: list[bytes] = []

    def send_text(self, text) -> None:
        self.sent.append(text.encode() if isinstance(text, str) else text)

    def send_binary(self, payload: bytes) -> None:
        self.sent.append(payload)


def test_json_dialect_records_counts():
    dialect = JsonDialect()
    client = FakeClient()
    dialect.read(client, 1, b'{"type":"welcome","room":"r"}', 1.0, True)
    assert client.state.ready_at is None
    dialect.read(client, 1, b'{"type":"snapshot","seq":1,"questions":[{"id":"q","up":0}],"mine":{}}', 2.0, True)
    assert client.state.ready_at == 2.0
    dialect.read(client, 1, b'{"type":"patch","seq":2,"questions":[{"id":"q","up":2,"text":"t"}],"removed":[]}', 3.0, True)
    dialect.read(client, 1, b'{"type":"patch","seq":3,"questions":[{"id":"q","up":3}],"removed":[]}', 4.0, True)
    assert list(client.state.seen["q"]) == [3.0, 3.0, 4.0]


def test_yjs_dialect_counts_vote_keys_and_answers_step1():
    dialect = YjsDialect(["qa", "qb"])
    watcher = FakeClient()
    dialect.read(watcher, 2, sync_message(0, b"\x00"), 1.0, True)
    assert watcher.sent == [sync_message(1, b"\x00\x00")]
    dialect.read(watcher, 2, sync_message(1, b"\x00\x00"), 2.0, True)
    assert watcher.state.ready_at == 2.0
    voter = FakeClient()
    update = dialect.vote_frame(voter, "qa", 7)
    dialect.read(watcher, 2, update, 3.0, True)
    assert list(watcher.state.seen["qa"]) == [3.0]
    assert "qb" not in watcher.state.seen


def test_hocuspocus_dialect_prefixes_and_authenticates():
    dialect = HocuspocusDialect("doc")
    client = FakeClient()
    dialect.hello(client, "token")
    auth, step1 = client.sent
    assert auth == b"\x03doc" + b"\x02\x00" + b"\x05token"
    assert step1 == b"\x03doc" + sync_message(0, b"\x00")
    dialect.read(client, 2, b"\x03doc" + sync_message(1, b"\x00\x00"), 5.0, False)
    assert client.state.ready_at == 5.0


def test_profile_summary_shares():
    collapsed = "main (a.py:1);run (b.py:2);write (c.py:3) 30\nmain (a.py:1);run (b.py:2) 10\n"
    summary = summarize(collapsed)
    assert summary["samples"] == 40
    assert summary["self"][0] == {"frame": "write (c.py)", "share": 0.75}
    assert {"frame": "run (b.py)", "share": 1.0} in summary["inclusive"]


# -- the lean client against a real server -------------------------------------------------


class Recorder:
    def __init__(self):
        self.messages = []

    def on_open(self, client, now):
        pass

    def on_message(self, client, opcode, payload, now):
        self.messages.append((opcode, payload))

    def on_close(self, client):
        pass


async def test_lean_client_echo_and_ping():
    async def echo(websocket):
        await websocket.ping()
        async for message in websocket:
            await websocket.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        recorder = Recorder()
        client = await open_client(f"ws://127.0.0.1:{port}/", recorder, timeout_s=5)
        client.send_text("hello")
        client.send_binary(b"\x00\x01" * 100)
        async with asyncio.timeout(5):
            while len(recorder.messages) < 2:
                await asyncio.sleep(0.01)
        assert recorder.messages == [(1, b"hello"), (2, b"\x00\x01" * 100)]
        client.close()
        async with asyncio.timeout(5):
            while not client.closed:
                await asyncio.sleep(0.01)


# -- one small end-to-end run --------------------------------------------------------------


@pytest.mark.cluster
def test_fanout_tiny_run_against_ama(tmp_path):
    """Run a few-second fanout with a few watchers against a real ``ama up`` and check the JSON."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "ama.bench.command", "bench", "fanout", "--watchers", "6", "--voters", "3", "--rate", "10",
         "--duration", "2", "--drain", "5", "--workers", "2", "--out", str(out), "--json", "-", "--time-limit", "100"],
        capture_output=True, text=True, timeout=150,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert doc["scenario"] == "fanout"
    ama = doc["results"]["ama"]
    assert ama["watchers"] == 6
    assert ama["votes_sent"] == 20
    assert ama["samples"] == 6 * 20
    assert ama["missing_shows"] == 0
    for name in ("p50_ms", "p99_ms", "p999_ms"):
        assert ama[name] > 0, name
    assert ama["p50_ms"] <= ama["p99_ms"] <= ama["p999_ms"]
    assert ama["frames_per_cpu_second"] > 0
    assert len(list(out.glob("fanout-*.json"))) == 1


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is missing, so the Node peers cannot be installed")
def test_node_peer_manifests_are_pinned():
    peers = Path(__file__).resolve().parents[1] / "benchmarks"
    for name in ("node-ws", "hocuspocus"):
        manifest = json.loads((peers / name / "package.json").read_text())
        for version in manifest["dependencies"].values():
            assert version[0].isdigit(), f"{name}: {version} is not an exact version"
        assert (peers / name / "package-lock.json").exists()
    for line in (peers / "pycrdt-websocket" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert "==" in line, line
