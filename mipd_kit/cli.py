"""The ``mipd`` command: one entry point, subcommands dispatched to ``main(argv)`` functions.

Every subcommand is a function taking an argv list, so the CLI, papermill and pytest
all go through the same code.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

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
    "train-student": ("mipd_kit.student.train", "main", "train an Ov-GSR student (baseline / MIPD variants)"),
    "predict": ("mipd_kit.student.predict", "main", "a trained student on image files: verbs, frames, boxes (SWiG format)"),
    "export-onnx": ("mipd_kit.student.export", "main", "export a trained student to ONNX, checked against torch"),
    "clhoi": ("mipd_kit.hoi.train", "main", "train and evaluate CL-HOI"),
    "check": ("mipd_kit.check", "main", "check every input a run will need (files, weights, GPU, LLM, disk)"),
    "run": ("mipd_kit.check", "run_main", "check the inputs (mipd check), then run the notebook pipeline"),
    "publish": ("mipd_kit.report", "main", "publish a finished run as the committed report (sampled rationales)"),
}


def usage() -> str:
    lines = ["usage: mipd <command> [args...]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "mipd <command> --help shows the options of a command; mipd --version the version."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dispatch ``argv[0]`` to its subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("--version", "-V"):
        from . import __version__
        print(f"mipd_kit {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"mipd: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    fn = getattr(importlib.import_module(module), func)
    code = fn(rest)
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
