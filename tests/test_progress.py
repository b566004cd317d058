"""Progress lines (mipd_kit.progress): counts, elapsed, ETA, epochs and counters; the console formatter."""

from __future__ import annotations

import io
import logging

from mipd_kit.progress import ConsoleFormatter, is_progress_line, progress, progress_lines


def test_progress_writes_whole_lines_with_count_eta_and_epoch() -> None:
    out = io.StringIO()
    made = {"n": 0}
    with progress(total=6, desc="student mipd seed 0", unit="step", steps_per_epoch=3, stream=out, min_interval=0,
                  counters=lambda: {"rationales": made["n"]}) as bar:
        for _ in range(6):
            made["n"] += 2
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) >= 7
    assert all(line.startswith("student mipd seed 0: ") and is_progress_line(line) for line in lines)
    assert "3/6 step (50%)" in "\n".join(lines) and " eta " in lines[-1] and "elapsed " in lines[-1]
    assert "epoch 1/2" in lines[1] and "epoch 2/2" in lines[-1]
    assert "rationales 12 (" in lines[-1]


def test_progress_over_an_iterable_and_disabled() -> None:
    out = io.StringIO()
    assert list(progress(range(4), desc="jobs", unit="job", stream=out, min_interval=0)) == [0, 1, 2, 3]
    assert "jobs: 4/4 job (100%)" in out.getvalue()
    quiet = io.StringIO()
    assert list(progress(range(3), desc="x", stream=quiet, enabled=False)) == [0, 1, 2]
    assert quiet.getvalue() == ""


def test_heartbeat_redraws_without_steps() -> None:
    import time

    out = io.StringIO()
    bar = progress(total=2, desc="distillation jobs", unit="job", stream=out, min_interval=0, heartbeat=0.05)
    time.sleep(0.3)
    bar.close()
    assert out.getvalue().count("distillation jobs: 0/2 job") >= 3


def test_console_formatter_keeps_only_progress_lines() -> None:
    text = "some warning\nNMPA seed 0: 5/10 step (50%) elapsed 00:02 eta 00:02 2.50step/s, epoch 1/2\nmore\n"
    assert progress_lines(text) == [text.splitlines()[1]]
    fmt = ConsoleFormatter("[mipd run] %(message)s")
    rec = logging.LogRecord("papermill", logging.WARNING, __file__, 1, text, None, None)
    assert fmt.format(rec) == "[mipd run] " + text.splitlines()[1]
    own = logging.LogRecord("mipd_kit.app.pipeline", logging.INFO, __file__, 1, "stage data running", None, None)
    assert fmt.format(own) == "[mipd run] stage data running"
    assert not is_progress_line("stage data running") and not is_progress_line("elapsed 3 s")


def test_stage_clock_logs_elapsed_and_eta(caplog) -> None:
    import time

    from mipd_kit.progress import stage_clock

    log = logging.getLogger("mipd_kit.test_clock")
    with caplog.at_level(logging.INFO, logger="mipd_kit.test_clock"):
        with stage_clock("stage data", 60.0, log, every=0.05):
            time.sleep(0.3)
        with stage_clock("stage teacher", None, log, every=0.05):
            time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records]
    timed = [m for m in lines if m.startswith("stage data: ")]
    assert len(timed) >= 2 and all("/60 s (" in m and " eta " in m and is_progress_line(m) for m in timed), lines
    assert any(m.startswith("stage teacher: ") and "elapsed" in m and is_progress_line(m) for m in lines), lines


def test_postfix_does_not_add_lines_and_close_does_not_repeat() -> None:
    out = io.StringIO()
    bar = progress(total=50, desc="teacher pretraining", unit="step", stream=out)  # 5 s between lines
    for i in range(50):
        bar.update(1)
        bar.set_postfix(loss=f"{1.0 / (i + 1):.3f}")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "0/50" in lines[0] and "50/50 step (100%)" in lines[1] and "loss=0.020" in lines[1]
    out = io.StringIO()
    with progress(total=2, desc="x", stream=out, min_interval=0) as bar:
        bar.update(2)
    assert out.getvalue().count("2/2") == 1
