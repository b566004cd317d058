"""Progress of the loops a user waits on (students, NMPA, CL-HOI, side-by-side jobs, JRG): one tqdm bar per loop.

:func:`progress` returns a ``tqdm`` bar. On a terminal it redraws in place; anywhere else (a notebook kernel run by
papermill, whose stderr ``mipd run`` copies into ``run.log`` and onto the console, a file, a pipe) every refresh is
one whole line, at most one per :data:`MIN_INTERVAL` seconds, in :data:`LINE_FORMAT`::

    student mipd seed 0: 120/400 step (30%) elapsed 00:12 eta 00:28 9.80 step/s, epoch 3/10

``steps_per_epoch`` adds the epoch to the line; ``counters`` (a callable returning ``{name: count}``) adds each count
and its rate since the bar started (``rationales 120 (8.0/s)``). ``MIPD_PROGRESS=0`` turns every bar off.
:func:`is_progress_line` tells such a line from other output (the pipeline shows those on the console).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
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
    """

    monitor_interval = 0  # no tqdm monitor thread: a process that forks workers (fork_map) must stay quiet

    def __init__(self, *args: Any, steps_per_epoch: int = 0, counters: Optional[Callable[[], Mapping[str, float]]] = None,
                 heartbeat: float = 0.0, clock: bool = False, lines: bool = False, **kw: Any):
        self.lines = lines
        self.steps_per_epoch = steps_per_epoch
        self.clock = clock
        self.counters = counters
        self._stop = threading.Event()
        super().__init__(*args, **kw)
        if heartbeat > 0 and not self.disable:
            threading.Thread(target=self._beat, args=(heartbeat,), daemon=True, name="mipd-progress").start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if self.clock:  # the count is the time itself (below the expected total while one is known)
                elapsed = self._time() - self.start_t
                self.n = min(elapsed, 0.99 * self.total) if self.total else elapsed
            self.refresh()

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        """As tqdm's, but in line mode the postfix waits for the next timed redraw (a line per step otherwise)."""
        super().set_postfix(ordered_dict, refresh=refresh and not self.lines, **kwargs)

    def close(self) -> None:
        self._stop.set()
        if self.lines and not self.disable and self.last_print_n == self.n:
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
    fmt = None if tty else (LINE_FORMAT if total else LINE_FORMAT_NO_TOTAL)
    interval = min_interval if min_interval is not None else (0.1 if tty else MIN_INTERVAL)
    return ProgressBar(iterable, total=total, desc=desc, unit=unit, disable=disable,
                       file=stream if tty else LineStream(stream), mininterval=interval, miniters=1,
                       bar_format=fmt, dynamic_ncols=tty, steps_per_epoch=steps_per_epoch,
                       counters=counters, heartbeat=heartbeat, lines=not tty, **kw)


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


@contextmanager
def stage_clock(desc: str, expected_s: Optional[float], logger: logging.Logger,
                every: float = STAGE_CLOCK_S) -> Iterator[ProgressBar]:
    """A line on ``logger`` every ``every`` seconds while the body runs (a pipeline stage): elapsed time and, when
    ``expected_s`` (the stage's last duration) is known, the ETA, e.g.
    ``stage distillation: 40/62 s (65%) elapsed 00:40 eta 00:22``."""
    bar = ProgressBar(total=round(expected_s, 1) if expected_s else None, desc=desc, unit="s",
                      file=LogStream(logger), mininterval=0, miniters=1, heartbeat=every, clock=True, leave=False,
                      lines=True,
                      bar_format="{desc}: {n:.0f}/{total:.0f} {unit} ({percentage:.0f}%) elapsed {elapsed} eta {remaining}"
                      if expected_s else "{desc}: {n:.0f} {unit} elapsed {elapsed}",
                      disable=os.environ.get("MIPD_PROGRESS", "1") == "0", delay=every)
    try:
        yield bar
    finally:
        bar.close()
