"""Progress of the loops a user waits on (students, NMPA, CL-HOI, side-by-side jobs, JRG): one tqdm bar per loop.

:func:`progress` returns a ``tqdm`` bar. On a terminal it redraws in place; anywhere else (a notebook kernel run by
papermill, whose stderr ``mipd run`` copies into ``run.log`` and onto the console, a file, a pipe) every refresh is
one whole line, at most one per :data:`MIN_INTERVAL` seconds, in :data:`LINE_FORMAT`::

    student mipd seed 0: 120/400 step (30%) elapsed 00:12 eta 00:28 9.80 step/s, epoch 3/10

``steps_per_epoch`` adds the epoch to the line, and the end of the first epoch always writes one (the first ETA);
``counters`` (a callable returning ``{name: count}``) adds each count and its rate since the bar started
(``rationales 120 (8.0/s)``). ``MIPD_PROGRESS=0`` turns every bar off. :func:`is_progress_line` tells such a line
from other output (the pipeline shows those on the console).

In a worker process of :func:`mipd_kit.machine.fork_map` (:func:`set_worker`) a bar writes no line before its first
step (``0/400 ... eta ?`` says nothing), then its first epoch, a line per :data:`MIN_INTERVAL` and its last line: the
worker's stderr is the parent's (a notebook kernel forwards a forked child's output too), so the side-by-side
students and NMPAs show their own counts, epochs, elapsed times and ETAs in ``run.log`` and on the console.

:func:`stage_clock` writes the pipeline's line per stage every :data:`STAGE_CLOCK_S`, with an ETA from the stage's
last duration, else a lower bound from the stage's own progress lines (:class:`EtaWatcher`), else
``(no estimate yet)``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, TextIO

from tqdm import tqdm

#: seconds between two progress lines when the output is not a terminal.
MIN_INTERVAL = 5.0
#: one progress line (tqdm's ``bar_format`` fields).
LINE_FORMAT = ("{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) elapsed {elapsed} eta {remaining} "
               "{rate_fmt}{postfix}")
#: the same without a known total (no percentage, no ETA).
LINE_FORMAT_NO_TOTAL = "{desc}: {n_fmt} {unit} elapsed {elapsed} {rate_fmt}{postfix}"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_IN_WORKER = False  # a forked worker of fork_map (set_worker)
_LINE = re.compile(r": \d+(\.\d+)?[kMG]?(/\d+(\.\d+)?[kMG]?)? \S+ (\(\d+%\) )?elapsed [\d:]+( eta [\d:?]+)?( |$)")


class LineStream:
    """A text stream for tqdm that writes each redraw as one line (tqdm redraws with ``\\r`` for a terminal)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, s: str) -> None:
        s = _ANSI.sub("", s.replace("\r", "")).strip()  # nested bars' cursor moves mean nothing in a log
        if s:
            self.stream.write(s + "\n")
            self.flush()

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream: nothing to flush
            pass


class ProgressBar(tqdm):
    """A tqdm bar that appends the epoch (``steps_per_epoch``) and counters with their rates to its line.

    Args:
        steps_per_epoch: steps of one epoch (0: no epoch shown).
        counters: called at each refresh; ``{name: count}`` shown as ``name count (rate/s)``.
        heartbeat: seconds between redraws that no step triggers (0: none), for steps that each take long (the
            jobs of ``fork_map``): elapsed time keeps moving.
        clock: the steps are seconds, advanced by the heartbeat (:func:`stage_clock`).
        lines: line mode (one whole line per redraw): ``set_postfix`` does not redraw, and closing does not repeat
            a line already written.
        quiet_start: no line before the first step (a forked worker's bars); the last line is written at close.
        note: called at each redraw; its text fills ``{note}`` of a ``bar_format`` (:func:`stage_clock`).
    """

    monitor_interval = 0  # no tqdm monitor thread: a process that forks workers (fork_map) must stay quiet

    def __init__(self, *args: Any, steps_per_epoch: int = 0, counters: Optional[Callable[[], Mapping[str, float]]] = None,
                 heartbeat: float = 0.0, clock: bool = False, lines: bool = False, quiet_start: bool = False,
                 note: Optional[Callable[[], str]] = None, **kw: Any):
        self.lines = lines
        self.steps_per_epoch = steps_per_epoch
        self.clock = clock
        self.counters = counters
        self.note = note
        self.quiet_start = quiet_start
        self._shown_n: Optional[float] = None  # the count of the last line written (line mode)
        self._first_epoch_due = steps_per_epoch > 0
        self._stop = threading.Event()
        if quiet_start:
            kw.setdefault("delay", 1e-9)  # tqdm writes no line at creation
        super().__init__(*args, **kw)
        if heartbeat > 0 and not self.disable:
            threading.Thread(target=self._beat, args=(heartbeat,), daemon=True, name="mipd-progress").start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if self.clock:  # the count is the time itself (below the expected total while one is known)
                elapsed = self._time() - self.start_t
                self.n = min(elapsed, 0.99 * self.total) if self.total else elapsed
            self.refresh()

    def update(self, n: float = 1) -> Optional[bool]:
        """As tqdm's; in line mode the step that ends the first epoch also writes a line (the first real ETA)."""
        out = super().update(n)
        if self._first_epoch_due and self.n >= self.steps_per_epoch:
            self._first_epoch_due = False
            if self.lines and not self.disable and self._shown_n != self.n:
                self.refresh()
        return out

    def display(self, msg: Optional[str] = None, pos: Optional[int] = None) -> Optional[bool]:
        self._shown_n = self.n
        return super().display(msg, pos)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        """As tqdm's, but in line mode the postfix waits for the next timed redraw (a line per step otherwise)."""
        super().set_postfix(ordered_dict, refresh=refresh and not self.lines, **kwargs)

    def close(self) -> None:
        self._stop.set()
        if self.lines and not self.disable:
            if self.quiet_start and self._shown_n != self.n:
                self.refresh()  # tqdm would write nothing at close after a delayed start
            if self._shown_n == self.n or self.last_print_n == self.n:
                self.leave = False  # the last line already says where it ended
        super().close()

    @property
    def format_dict(self) -> dict[str, Any]:
        d = super().format_dict
        extra = []
        if self.steps_per_epoch and d.get("total"):
            epochs = max(1, -(-int(d["total"]) // self.steps_per_epoch))
            extra.append(f"epoch {min(epochs, int(d['n']) // self.steps_per_epoch + 1)}/{epochs}")
        if self.counters is not None:
            dt = max(float(d.get("elapsed") or 0.0), 1e-9)
            extra += [f"{k} {v:g} ({v / dt:.1f}/s)" for k, v in self.counters().items()]
        if extra:
            d["postfix"] = ", ".join(([d["postfix"]] if d.get("postfix") else []) + extra)
        if self.note is not None:
            d["note"] = self.note()
        return d


def progress(iterable: Optional[Iterable[Any]] = None, *, total: Optional[float] = None, desc: str = "",
             unit: str = "it", steps_per_epoch: int = 0,
             counters: Optional[Callable[[], Mapping[str, float]]] = None, enabled: bool = True,
             stream: Optional[TextIO] = None, min_interval: Optional[float] = None, heartbeat: float = 0.0,
             **kw: Any) -> ProgressBar:
    """A progress bar over ``iterable`` (or ``total`` steps, advanced with ``update``): see the module docstring.

    Args:
        iterable: what to loop over (its ``len`` is the total when ``total`` is None).
        total: number of steps.
        desc: what is running, e.g. ``"student mipd seed 0"``.
        unit: what a step is (``step``, ``epoch``, ``job``, ``chain``).
        steps_per_epoch / counters / heartbeat: see :class:`ProgressBar`.
        enabled: False gives a bar that shows nothing (the caller's own ``progress`` flag).
        stream: where to write (default ``sys.stderr``).
        min_interval: seconds between two redraws (default :data:`MIN_INTERVAL` off a terminal, 0.1 on one).
        **kw: passed to ``tqdm`` (``initial``, ``leave``, ...).
    """
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    disable = not enabled or os.environ.get("MIPD_PROGRESS", "1") == "0"
    if _IN_WORKER and not tty:
        kw.setdefault("quiet_start", True)
    fmt = None if tty else (LINE_FORMAT if total else LINE_FORMAT_NO_TOTAL)
    interval = min_interval if min_interval is not None else (0.1 if tty else MIN_INTERVAL)
    return ProgressBar(iterable, total=total, desc=desc, unit=unit, disable=disable,
                       file=stream if tty else LineStream(stream), mininterval=interval, miniters=1,
                       bar_format=fmt, dynamic_ncols=tty, steps_per_epoch=steps_per_epoch,
                       counters=counters, heartbeat=heartbeat, lines=not tty, **kw)


def set_worker(flag: bool = True) -> None:
    """Mark this process as a forked worker of :func:`mipd_kit.machine.fork_map` (its bars start quietly)."""
    global _IN_WORKER
    _IN_WORKER = flag


def is_progress_line(text: str) -> bool:
    """Whether ``text`` holds a line written by a non-terminal :func:`progress` bar."""
    return any(_LINE.search(line) for line in text.splitlines())


def progress_lines(text: str) -> list[str]:
    """The progress lines among ``text``'s lines (a notebook's captured stderr holds other messages too)."""
    return [line.strip() for line in text.splitlines() if _LINE.search(line)]


class ConsoleFormatter(logging.Formatter):
    """A log formatter that shows, of a record from outside ``mipd_kit`` (papermill's copy of a notebook's stderr),
    only its progress lines, each with the format's prefix."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith("mipd_kit"):
            return super().format(record)
        return "\n".join(self._fmt.replace("%(message)s", line) if self._fmt else line
                         for line in progress_lines(record.getMessage()))


#: seconds between two lines of :func:`stage_clock`.
STAGE_CLOCK_S = 10.0


class LogStream:
    """A text stream for tqdm that logs each redraw as one INFO record of ``logger``."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def write(self, s: str) -> None:
        s = _ANSI.sub("", s.replace("\r", "")).strip()
        if s:
            self.logger.info(s)

    def flush(self) -> None:
        pass


def parse_eta(line: str) -> Optional[tuple[str, float]]:
    """``(desc, seconds)`` of a progress line's ETA (``eta 01:07``, ``eta 1:01:27``); None without one (``eta ?``,
    no total, not a progress line)."""
    m = _LINE.search(line)
    if not m:
        return None
    e = re.search(r" eta (\d+(?::\d\d){1,2})( |$)", line[m.start():])
    if not e:
        return None
    secs = 0.0
    for part in e.group(1).split(":"):
        secs = 60 * secs + int(part)
    return line[:m.start()].strip(), secs


def lower_bound_eta(seen: Mapping[str, tuple[float, float]], now: float,
                    horizon: float = 3 * STAGE_CLOCK_S) -> Optional[tuple[float, str]]:
    """The longest remaining time among the loops seen running (``seen``: desc -> (time seen, its ETA in s then)),
    counted down to ``now``; loops not seen for ``horizon`` s, or whose time is up (a finished loop says
    ``eta 00:00``), are over. A stage ends no sooner than its longest running loop, so this bounds the stage's ETA
    from below. ``(seconds, desc)``, or None when no loop is running."""
    best: Optional[tuple[float, str]] = None
    for desc, (t, eta) in seen.items():
        left = eta - (now - t)
        if now - t <= horizon and left > 0 and (best is None or left > best[0]):
            best = (left, desc)
    return best


class EtaWatcher(logging.Handler):
    """A logging handler that remembers the last ETA of each progress line passing through a logger (papermill's
    copy of a notebook's stderr): :meth:`estimate` is :func:`lower_bound_eta` of what it saw."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        super().__init__(logging.DEBUG)
        self.clock = clock
        self.seen: dict[str, tuple[float, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted has no ETA
            return
        for line in progress_lines(msg):
            got = parse_eta(line)
            if got is not None and not got[0].startswith("stage "):
                self.seen[got[0]] = (self.clock(), got[1])

    def estimate(self) -> Optional[tuple[float, str]]:
        return lower_bound_eta(self.seen, self.clock())

    def note(self) -> str:
        """The stage clock's words without a stage duration: ``eta >=01:07 (NMPA seed 0)`` or ``(no estimate yet)``."""
        est = self.estimate()
        if est is None:
            return " (no estimate yet)"
        return f" eta >={tqdm.format_interval(est[0])} ({est[1]})"


@contextmanager
def stage_clock(desc: str, expected_s: Optional[float], logger: logging.Logger,
                every: float = STAGE_CLOCK_S, watch: Optional[logging.Logger] = None) -> Iterator[ProgressBar]:
    """A line on ``logger`` every ``every`` seconds while the body runs (a pipeline stage): elapsed time and, when
    ``expected_s`` (the stage's last duration) is known, the ETA, e.g.
    ``stage distillation: 40/62 s (65%) elapsed 00:40 eta 00:22``. Without it, the progress lines logged on ``watch``
    meanwhile (the stage's own loops, :class:`EtaWatcher`) give a lower bound,
    ``stage distillation: 50 s elapsed 00:50 eta >=01:07 (distillation jobs on 2 workers)``; without those,
    ``stage distillation: 10 s elapsed 00:10 (no estimate yet)``."""
    watcher = EtaWatcher() if watch is not None and not expected_s else None
    if watcher is not None:
        watch.addHandler(watcher)
    bar = ProgressBar(total=round(expected_s, 1) if expected_s else None, desc=desc, unit="s",
                      file=LogStream(logger), mininterval=0, miniters=1, heartbeat=every, clock=True, leave=False,
                      lines=True, note=watcher.note if watcher is not None else (lambda: " (no estimate yet)"),
                      bar_format="{desc}: {n:.0f}/{total:.0f} {unit} ({percentage:.0f}%) elapsed {elapsed} eta {remaining}"
                      if expected_s else "{desc}: {n:.0f} {unit} elapsed {elapsed}{note}",
                      disable=os.environ.get("MIPD_PROGRESS", "1") == "0", delay=every)
    try:
        yield bar
    finally:
        bar.close()
        if watcher is not None:
            watch.removeHandler(watcher)
