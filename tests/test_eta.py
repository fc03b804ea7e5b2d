"""Plain progress lines (logs, CI, nohup): done/total and an ETA every ~30 s, nothing for a short stage."""

from __future__ import annotations

import io

from ssmseg import eta, progress


def test_a_line_every_interval_with_done_total_and_eta():
    now, out = [0.0], io.StringIO()
    p = eta.PlainProgress("scoring fold 2", 100, every=30, clock=lambda: now[0], out=out)
    for _ in range(10):  # 10 items in 20 s: silent (under 30 s)
        now[0] += 2
        p.advance()
    assert out.getvalue() == ""
    for _ in range(10):  # 20 items in 40 s: one line at 30 s
        now[0] += 2
        p.advance()
    lines = out.getvalue().splitlines()
    assert lines == ["scoring fold 2: 15/100 (15%), 0.5/s, 30s elapsed, ETA 2m50s"]
    now[0] += 40
    p.advance(80)
    assert out.getvalue().splitlines()[-1].startswith("scoring fold 2: 100/100 (100%)")
    assert "ETA" not in out.getvalue().splitlines()[-1]


def test_slow_items_and_unknown_totals_read_well():
    now, out = [0.0], io.StringIO()
    p = eta.PlainProgress("baseline", None, every=30, clock=lambda: now[0], out=out)
    now[0] = 4000
    p.advance()
    assert out.getvalue().strip() == "baseline: 1 done, 4e+03 s each, 1h06m elapsed"
    assert eta.duration(59.6) == "1m00s" and eta.duration(3) == "3s"


def test_progress_bar_prints_plain_lines_off_a_terminal(monkeypatch, capsys):
    monkeypatch.setenv("SSMSEG_PROGRESS_EVERY", "0")
    assert not progress.console.is_terminal  # under pytest output is captured
    with progress.progress_bar("epoch 1/2 val", 3) as advance:
        for _ in range(3):
            advance()
    err = capsys.readouterr().err
    assert "epoch 1/2 val: 3/3 (100%)" in err
