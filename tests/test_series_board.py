"""The workers' shared series board: real files and memory maps, two mappings (as two
workers have), a second real process, a reader that falls a ring behind; and the two users
— the output guard's length windows and the band monitor — giving every worker the same
windows, baselines and alerts as one process that saw every value."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from warden import memory_order
from warden.errors import WardenError
from warden.guard.anomaly import OutputAnomalyChecker
from warden.models.monitor import BandMonitor
from warden.series_board import SeriesBoard, series_names

NAMES = series_names(["sb_chat", "sb_claims"])


@pytest.fixture(autouse=True, params=["lock-free reads", "locked reads"])
def read_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: as on x86-64, and as on a weakly ordered CPU (`memory_order`)."""
    monkeypatch.setattr(memory_order, "LOCK_FREE_READS", request.param == "lock-free reads")
    return str(request.param)


def boards(tmp_path: Path, capacity: int = 64) -> tuple[SeriesBoard, SeriesBoard]:
    """Two workers' mappings of one board."""
    path = tmp_path / "series.bin"
    SeriesBoard.create(path, NAMES, capacity).close()
    return SeriesBoard(path, NAMES), SeriesBoard(path, NAMES)


def test_values_from_two_mappings_are_read_in_one_order(tmp_path: Path) -> None:
    a, b = boards(tmp_path)
    assert NAMES == ["length:sb_chat", "length:sb_claims", "review:sb_chat", "review:sb_claims"]
    sa, sb = a.series("length:sb_chat"), b.series("length:sb_chat")
    assert [sa.append(1.0), sb.append(2.0), sa.append(3.0)] == [0, 1, 2]
    b.series("length:sb_claims").append(9.0)  # another series: its own count
    for reader in (a.series("length:sb_chat"), b.series("length:sb_chat")):
        first, lost, pairs = reader.pull()
        assert first == 0 and not lost and [v for v, _ in pairs] == [1.0, 2.0, 3.0]
        assert [o for _, o in pairs] == [a.owner, b.owner, a.owner]
        assert reader.pull() == (3, False, [])
    assert a.owner != b.owner


def test_a_reader_a_ring_behind_reports_the_gap(tmp_path: Path) -> None:
    a, b = boards(tmp_path, capacity=8)
    writer, reader = a.series("review:sb_chat"), b.series("review:sb_chat")
    for i in range(20):
        writer.append(float(i))
    first, lost, pairs = reader.pull()
    assert first == 13 and lost and [v for v, _ in pairs] == [float(i) for i in range(13, 20)]
    assert reader.gaps == 13
    writer.append(20.0)
    assert reader.pull() == (20, False, [(20.0, a.owner)])
    late = b.series("review:sb_chat")
    late.seek(0)  # the oldest value the ring still holds
    assert late.position == 14 and late.pending() == 7  # 21 appended, 8 kept, 1 being written


def test_a_board_for_other_decision_types_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "series.bin"
    SeriesBoard.create(path, NAMES).close()
    with pytest.raises(WardenError, match="other decision types"):
        SeriesBoard(path, series_names(["something_else"]))


def test_a_second_process_appends_to_the_same_series(tmp_path: Path) -> None:
    a, _ = boards(tmp_path)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from warden.series_board import SeriesBoard
        board = SeriesBoard(Path({str(tmp_path / "series.bin")!r}), {NAMES!r})
        series = board.series("length:sb_claims")
        for i in range(50):
            series.append(float(i))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    _first, lost, pairs = a.series("length:sb_claims").pull()
    assert not lost and [v for v, _ in pairs] == [float(i) for i in range(50)]
    assert {o for _, o in pairs} != {a.owner}


def test_shared_length_windows_match_one_process_that_saw_everything(tmp_path: Path) -> None:
    a, b = boards(tmp_path, capacity=1024)
    one, two = OutputAnomalyChecker(window=100), OutputAnomalyChecker(window=100)
    one.share(a)
    two.share(b)
    alone = OutputAnomalyChecker(window=100)
    lengths = [200 + (i * 37) % 400 for i in range(300)]
    for i, length in enumerate(lengths):  # the two workers answer alternately
        (one if i % 2 else two).observe("sb_chat", length)
        alone.observe("sb_chat", length)
        if i % 50 == 49:
            assert one.baseline("sb_chat") == two.baseline("sb_chat") == alone.baseline("sb_chat")
    base = one.baseline("sb_chat")
    assert base is not None and base.n == 100
    # so both judge the same answer the same way, on both workers' evidence
    assert one.check_length(20_000, decision_type="sb_chat") is not None
    assert two.check_length(20_000, decision_type="sb_chat") == one.check_length(
        20_000, decision_type="sb_chat"
    )
    # a decision type the board does not carry stays local
    one.observe("not_on_board", 100)
    assert two.baseline("not_on_board") is None and one.baseline("not_on_board") is not None


def _alerts(decision_type: str) -> float:
    value = REGISTRY.get_sample_value("warden_band_alerts_total", {"decision_type": decision_type})
    return value or 0.0


def test_shared_band_monitors_agree_and_one_worker_counts_an_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Strict turns (one worker always appends the odd positions): both still apply the
    board as they go, the alert is logged and counted as the decisions come — no status
    read needed — once, by the worker whose decision raised it."""
    a, b = boards(tmp_path, capacity=4096)
    one, two = BandMonitor(window=100, baseline=200), BandMonitor(window=100, baseline=200)
    one.share(a, ["sb_claims"])
    two.share(b, ["sb_claims"])
    alone = BandMonitor(window=100, baseline=200)
    bands = ["review" if i % 20 == 0 else "auto_approve" for i in range(400)]
    bands += ["review" if i % 3 == 0 else "auto_approve" for i in range(150)]  # a shift
    before = _alerts("sb_claims")
    with caplog.at_level(logging.WARNING, logger="warden.bands"):
        for i, band in enumerate(bands):
            (one if i % 2 else two).observe("sb_claims", band)
            alone.observe("sb_claims", band)
        # counted twice: once by the worker that raised it, once by the one process
        assert _alerts("sb_claims") - before == 2
        assert len([r for r in caplog.records if "band alert: sb_claims" in r.message]) == 2
    views = [m.status()["sb_claims"] for m in (one, two)]
    assert views[0] == views[1]
    reference = alone.status()["sb_claims"]
    assert views[0]["shared_by_workers"] and not reference["shared_by_workers"]
    for key in ("decisions_seen", "review_share", "baseline_share", "alert", "window_filled"):
        assert views[0][key] == reference[key], key
    assert views[0]["decisions_seen"] == 550 and views[0]["alert"] is True
    assert _alerts("sb_claims") - before == 2  # reading the status raised nothing more


def test_a_worker_started_late_takes_the_chart_from_the_board(tmp_path: Path) -> None:
    """A worker restarted after the ring wrapped never saw the chart's first decisions: it
    takes the baseline another worker published, and reports the same window and count."""
    a, b = boards(tmp_path, capacity=256)
    early = BandMonitor(window=50, baseline=100)
    early.share(a, ["sb_chat"])
    for i in range(600):
        early.observe("sb_chat", "review" if i % 4 == 0 else "auto_approve")
    late = BandMonitor(window=50, baseline=100)
    late.share(b, ["sb_chat"])
    for i in range(30):
        (late if i % 2 else early).observe("sb_chat", "review" if i % 5 == 0 else "auto_approve")
    first, second = early.status()["sb_chat"], late.status()["sb_chat"]
    assert first["baseline_share"] == pytest.approx(0.25)
    for key in ("decisions_seen", "review_share", "baseline_share", "alert", "window_filled"):
        assert second[key] == first[key], key
    assert second["decisions_seen"] == 630


def test_a_thresholds_activation_starts_one_chart_for_every_worker(tmp_path: Path) -> None:
    """The worker that activates starts the new chart on the board; the others, learning of
    the activation a moment later, follow it instead of starting one of their own."""
    a, b = boards(tmp_path)
    one, two = BandMonitor(window=20, baseline=50), BandMonitor(window=20, baseline=50)
    one.share(a, ["sb_claims"])
    two.share(b, ["sb_claims"])
    for i in range(80):
        (one if i % 2 else two).observe("sb_claims", "auto_approve")
    one.set_expected("sb_claims", 0.1)  # activated through worker one
    for i in range(30):
        (one if i % 2 else two).observe("sb_claims", "review" if i % 10 == 0 else "auto_approve")
    two.set_expected("sb_claims", 0.1)  # worker two's poll catches up: no second restart
    views = [m.status()["sb_claims"] for m in (one, two)]
    assert views[0] == views[1]
    assert views[0]["decisions_seen"] == 30 and views[0]["baseline_share"] == 0.1
    assert views[0]["baseline_source"] == "thresholds" and views[0]["window_filled"] == 20
    two.set_expected("sb_claims", None)  # deactivated: back to a baseline of its own, for both
    assert one.status()["sb_claims"]["baseline_source"] == "first 50 decisions"


def test_on_a_weakly_ordered_cpu_a_read_waits_for_the_writer(
    tmp_path: Path, read_mode: str
) -> None:
    """With locked reads a reader does not run while a writer holds the board."""
    if read_mode != "locked reads":
        pytest.skip("the lock-free reader does not wait, by design")
    import threading

    a, b = boards(tmp_path)
    a.series("review:sb_chat").append(1.0)
    done = threading.Event()
    reader = b.series("review:sb_chat")

    def read() -> None:
        reader.pull()
        reader.chart()
        done.set()

    with a._locked():
        thread = threading.Thread(target=read)
        thread.start()
        assert not done.wait(0.3)  # held off by the writer's lock
    assert done.wait(10)
    thread.join()
