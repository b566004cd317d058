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


def test_the_first_epoch_writes_a_line_with_an_eta() -> None:
    """A bar of several epochs writes a line when its first epoch ends, whatever the time since its last line."""
    import re

    out = io.StringIO()
    with progress(total=12, desc="NMPA seed 0", unit="step", steps_per_epoch=4, stream=out,
                  min_interval=3600) as bar:
        for _ in range(12):
            bar.update(1)
    lines = out.getvalue().splitlines()
    first = [line for line in lines if line.startswith("NMPA seed 0: 4/12 step")]
    assert len(first) == 1 and re.search(r" eta \d\d:\d\d", first[0]) and "epoch 2/3" in first[0], lines
    assert lines[-1].startswith("NMPA seed 0: 12/12 step (100%)") and len(lines) == 3  # start, first epoch, end


def _epochs_in_worker(job: int) -> int:
    """A job of fork_map that runs 3 epochs of 2 steps under a progress bar (as a student in a worker does)."""
    import time

    with progress(total=6, desc=f"student job{job} seed 0", unit="step", steps_per_epoch=2) as bar:
        for _ in range(6):
            time.sleep(0.02)
            bar.update(1)
    return job


def test_forked_workers_report_their_epochs_with_an_eta_on_the_parents_stderr(capfd) -> None:
    """fork_map's workers write their own bars' lines (count, epoch, elapsed, ETA) to the stderr they share with
    the parent, from their first step on (no ``0/6 ... eta ?`` line), and the parent's job bar stays."""
    import re

    import torch  # noqa: F401 - imported here once (the workers' _one_thread needs it), not in each worker

    from mipd_kit.machine import fork_map

    assert fork_map(_epochs_in_worker, [(0,), (1,)], 2, name=lambda i: f"distillation: student job{i}") == [0, 1]
    err = capfd.readouterr().err
    for job in (0, 1):
        mine = [line for line in progress_lines(err) if line.startswith(f"student job{job} seed 0: ")]
        assert any(re.search(r"2/6 step \(33%\) elapsed \d\d:\d\d eta \d\d:\d\d", m) and "epoch 2/3" in m
                   for m in mine), err
        assert mine[-1].startswith(f"student job{job} seed 0: 6/6 step (100%)"), err
        assert not any(" 0/6 " in m for m in mine), err
    assert "distillation jobs on 2 workers: 2/2 job" in err


def test_eta_of_a_progress_line_and_the_lower_bound_of_running_loops() -> None:
    from mipd_kit.progress import lower_bound_eta, parse_eta

    assert parse_eta("NMPA seed 0: 5/10 step (50%) elapsed 00:02 eta 01:07 2.50step/s, epoch 1/2") == (
        "NMPA seed 0", 67.0)
    assert parse_eta("distillation jobs on 2 workers: 1/36 job (3%) elapsed 01:45 eta 1:01:27 105.35s/job") == (
        "distillation jobs on 2 workers", 3687.0)
    assert parse_eta("distillation jobs on 2 workers: 0/36 job (0%) elapsed 00:00 eta ? ?job/s") is None
    assert parse_eta("the eta 01:00 of nothing") is None
    seen = {"a": (100.0, 30.0), "b": (110.0, 25.0), "old": (10.0, 999.0)}
    assert lower_bound_eta(seen, 120.0) == (15.0, "b")  # a: 30 - 20 = 10, b: 25 - 10 = 15; old: over
    assert lower_bound_eta({"a": (0.0, 5.0), "done": (19.0, 0.0)}, 20.0) is None  # its time is up; finished
    assert lower_bound_eta({}, 0.0) is None


def test_stage_clock_without_a_duration_says_so_or_bounds_the_eta_by_the_stages_own_lines(caplog) -> None:
    import re
    import time

    from mipd_kit.progress import stage_clock

    log = logging.getLogger("mipd_kit.test_clock2")
    nb = logging.getLogger("test_clock2.papermill")
    with caplog.at_level(logging.INFO):
        with stage_clock("stage judge", None, log, every=0.05, watch=nb):
            time.sleep(0.2)
        with stage_clock("stage distillation", None, log, every=0.05, watch=nb):
            nb.warning("distillation jobs on 2 workers: 1/3 job (33%) elapsed 00:10 eta 05:00 10.0s/job\n")
            time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records if r.name == "mipd_kit.test_clock2"]
    judge = [m for m in lines if m.startswith("stage judge: ")]
    assert judge and all(m.endswith("(no estimate yet)") and is_progress_line(m) for m in judge), lines
    dist = [m for m in lines if m.startswith("stage distillation: ")]
    assert dist and all(re.search(r" eta >=0[45]:\d\d \(distillation jobs on 2 workers\)$", m) and is_progress_line(m)
                        for m in dist), lines
    assert not nb.handlers  # the watcher is gone with the stage
