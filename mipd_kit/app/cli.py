"""The ``mipd`` command: one entry point, subcommands dispatched to ``main(argv)`` functions.

Every subcommand is a function taking an argv list, so the CLI, papermill and pytest
all go through the same code.

The error boundary (:func:`run_command`): every subcommand's user errors -- ``OSError`` (full disk, read-only or
missing folders, a file where a folder is expected...), the ``ValueError`` family (bad data, malformed numbers,
``DataError``), too-deep input (``RecursionError``), overflowing numbers, broken archives -- end as one line on
stderr, ``mipd <command>: error: ...``, and exit code 2; Ctrl-C ends with one line and exit code 130. ``--debug``
(anywhere on the command line) or ``MIPD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
import zipfile
from typing import Callable, Optional, Sequence

#: exit code for a user error (bad input, bad option, a disk that cannot take the output)
USER_ERROR = 2
#: exit code after Ctrl-C (128 + SIGINT, as shells report it)
INTERRUPTED = 130
#: exceptions turned into one line and exit 2 at the boundary (a bug elsewhere keeps its traceback)
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, ArithmeticError, RecursionError, EOFError,
                                                zipfile.BadZipFile, MemoryError)

#: subcommand -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("mipd_kit.data.synthsitu.generate", "main", "generate the SynthSitu world (GSR + HOI + pretraining corpus)"),
    "data": ("mipd_kit.data.prepare", "main", "real datasets: mipd data prepare swig|hico|vcoco --root DIR "
             "(pinned, verified, world laid out); mipd data download ... --to DIR"),
    "split": ("mipd_kit.data.splits", "main", "build an open-vocabulary split file (counts / Zellers-Choi / lists)"),
    "eval-swig": ("mipd_kit.eval.swig", "main", "SWiG / Ov-GSR metrics for a predictions file"),
    "eval-hico": ("mipd_kit.eval.hico", "main", "HICO-DET mAP by the official protocol"),
    "eval-vcoco": ("mipd_kit.eval.vcoco", "main", "V-COCO role AP (scenario 1)"),
    "teacher": ("mipd_kit.teachers.embedded", "main", "train / evaluate the embedded teacher"),
    "features": ("mipd_kit.teachers.cache", "main", "extract and cache teacher features"),
    "pretrain": ("mipd_kit.language.pretrain", "main", "train and release the embedded teacher + captioner (fp16)"),
    "rationales": ("mipd_kit.rationales.jrg", "main", "generate and judge rationales (JRG)"),
    "train-student": ("mipd_kit.app.stages.student_runs", "main", "train an Ov-GSR student (baseline / MIPD variants)"),
    "predict": ("mipd_kit.student.predict", "main", "a trained student on image files: verbs, frames, boxes (SWiG format)"),
    "export-onnx": ("mipd_kit.student.export", "main", "export a trained student to ONNX, checked against torch"),
    "release-student": ("mipd_kit.student.release", "main", "release a run's student as the package's default (fp16)"),
    "clhoi": ("mipd_kit.app.stages.clhoi_runs", "main", "train and evaluate CL-HOI"),
    "check": ("mipd_kit.app.check", "main", "check every input a run will need (files, weights, GPU, LLM, disk)"),
    "run": ("mipd_kit.app.check", "run_main", "check the inputs (mipd check), then run the notebook pipeline"),
    "publish": ("mipd_kit.app.report", "main", "publish a finished run as the committed report (sampled rationales)"),
}


def usage() -> str:
    lines = ["usage: mipd <command> [args...]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "mipd <command> --help shows the options of a command; mipd --version the version; --debug (or "
              "MIPD_DEBUG=1) shows the traceback of an error."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dispatch ``argv[0]`` to its subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MIPD_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("--version", "-V"):
        from .. import __version__
        print(f"mipd_kit {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"mipd: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    return run_command(f"mipd {name}", lambda: getattr(importlib.import_module(module), func)(rest), debug)


def error_line(e: BaseException) -> str:
    """One line saying what went wrong, secrets redacted (:func:`mipd_kit.redaction.redact`)."""
    from ..redaction import redact

    return redact(_error_text(e))


def _error_text(e: BaseException) -> str:
    """The file and the reason for an ``OSError`` (with a hint for a full or read-only disk), the message for the
    others (its lines joined)."""
    if isinstance(e, OSError) and e.errno is not None:
        where = f"{e.filename}: " if e.filename is not None else ""
        if e.filename2 is not None:
            where = f"{e.filename} -> {e.filename2}: "
        hint = {errno.ENOSPC: " (the disk is full: free space or choose another output folder)",
                errno.EDQUOT: " (disk quota exceeded)",
                errno.EROFS: " (read-only file system: choose another output folder)",
                errno.EACCES: " (no permission)",
                errno.ENOTDIR: " (a file stands where a folder is expected)",
                errno.EISDIR: " (a folder stands where a file is expected)"}.get(e.errno, "")
        return f"{where}{e.strerror or os.strerror(e.errno)}{hint}"
    if isinstance(e, RecursionError):
        return "input nested too deeply to read (RecursionError)"
    if isinstance(e, MemoryError):
        return "out of memory"
    msg = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (ArithmeticError, zipfile.BadZipFile, EOFError)):
        msg = f"{type(e).__name__}: {msg}"
    return msg[:2000]


def run_command(prog: str, fn: Callable[[], Optional[int]], debug: bool = False) -> int:
    """Run ``fn`` (a subcommand) behind the error boundary; returns its exit code, 2 for a user error, 130 after
    Ctrl-C. With ``debug`` the traceback is printed too."""
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"\n{prog}: interrupted (Ctrl-C); finished work is kept", file=sys.stderr)
        return INTERRUPTED
    except USER_ERRORS as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {error_line(e)}" + ("" if debug else "  (--debug shows the traceback)"),
              file=sys.stderr)
        return USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
