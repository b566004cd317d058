"""``mipd publish``: turn a finished run folder into the small report committed beside the code.

A run folder (``reports/<run-id>/``, see ``mipd_kit.app.pipeline``) holds gigabytes of predictions, checkpoints and the
full rationale store; the committed report (``reports/latest-default/``) keeps what a reader needs to check the
numbers and see the rationales without running anything:

* the run's ``results.md``, ``results_*.md``, ``metrics.json``, ``status.json``, ``environment.json``,
  ``config.yaml``, ``jrg_stats.json``, ``ov_split.json``, ``run.log`` (every pass of every stage, with the notebooks'
  printed output), ``figures/`` and the executed ``notebooks/`` (any embedded
  output image larger than ``max_image_kb`` replaced by a one-line note, so the copy stays small);
* ``rationales_sample.jsonl``: a seeded random sample of ``sample_lines`` lines of the run's ``rationales.jsonl``,
  verbatim and in file order (all lines if fewer);
* ``rationales_summary.json``: record counts per kind / polarity / round / backend / source, and the sizes of the
  control stores (``rationales-template.jsonl``, ``rationales-shuffled.jsonl``);
* ``samples/``: ``samples`` rationales, glimpse and gaze, positive and negative about evenly, plus a couple of
  unjudged descriptions of unlabeled images (seeded, :func:`mipd_kit.viz.rationales.sample_items`), each with its
  image (a gaze rationale's role box drawn) and ``samples/README.md`` showing them with kind, role, polarity, round,
  the judge's score and reasons;
* ``README.md``: one paragraph saying where the copy came from (and, with ``allow_partial``, that the run was not
  finished).

The copy is built in a sibling temporary folder and swapped in at the end (the old destination is renamed away,
the new one renamed into place, then the old one removed), so an interrupted publish leaves the previous report
intact. A run whose ``status.json`` state is not ``done`` is refused unless ``allow_partial``; a copy larger than
:data:`MAX_BYTES` is refused (nothing is replaced), and so is a copy in which a file holds a key-like string, a
configured key or credentials in a URL (:func:`mipd_kit.redaction.find_secrets`) unless ``redact_secrets``
(``--redact-secrets``), which publishes it with ``[REDACTED]`` in their place.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from PIL import Image

from mipd_kit.data.records import DataError
from mipd_kit.fileio import atomic_path, atomic_write_text, dumps, redact_file, replace_dir
from mipd_kit.rationales.store import complete_lines, parse_rationale_lines
from mipd_kit.redaction import find_secrets
from mipd_kit.viz.rationales import build_items, load_world_situations, render_item, sample_items, verdict_text

from .runfolder import PipelineError, read_status

#: the largest copy ``publish`` writes (bytes); a larger one is refused.
MAX_BYTES = 20_000_000
#: files of the run folder copied when present
RUN_FILES = ("results.md", "metrics.json", "status.json", "environment.json", "config.yaml", "jrg_stats.json",
             "ov_split.json", "run.log")
#: longest side in pixels of a drawn sample image (a gaze rationale's image with its box)
MAX_SAMPLE_SIDE = 768
#: the control stores whose sizes ``rationales_summary.json`` records
CONTROL_STORES = ("rationales-template.jsonl", "rationales-shuffled.jsonl")
#: output MIME types that hold an image in an executed notebook
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")


class PublishError(Exception):
    """A run that cannot be published as asked (not finished, too large, no world for the samples)."""


@dataclass
class PublishReport:
    """What :func:`publish` wrote.

    Attributes:
        dest: the published folder.
        bytes: its total size.
        files: its files, relative paths.
        state: the run's state in ``status.json``.
        rationale_lines / sample_lines: lines of the run's store and of the sample (0 when the run has no store).
        samples: the sample rationales shown in ``samples/README.md``.
        missing_images: sample images not found or unreadable (the sample is shown without its image).
        dropped_outputs: notebook output images dropped for size, ``"notebook: cell N (K KB)"``.
        redacted: files of the copy whose secrets were replaced by ``[REDACTED]`` (``redact_secrets``).
    """

    dest: Path
    bytes: int = 0
    files: list[str] = field(default_factory=list)
    state: str = ""
    rationale_lines: int = 0
    sample_lines: int = 0
    samples: int = 0
    missing_images: list[str] = field(default_factory=list)
    dropped_outputs: list[str] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)


# -- pieces (pure or single-file) -------------------------------------------------------------------------------------
def world_of(status: dict[str, Any]) -> Optional[Path]:
    """The world folder the run's stages were given (``stages.*.params.world_dir`` of ``status.json``)."""
    for st in (status.get("stages") or {}).values():
        w = (st or {}).get("params", {}).get("world_dir") if isinstance(st, dict) else None
        if w:
            return Path(w)
    return None


def sample_lines(lines: Sequence[bytes], k: int, seed: int) -> list[bytes]:
    """``k`` lines drawn without replacement with ``random.Random(seed)``, in file order (all when fewer)."""
    if k >= len(lines):
        return list(lines)
    idx = sorted(random.Random(seed).sample(range(len(lines)), k))
    return [lines[i] for i in idx]


def store_lines(path: Path) -> list[bytes]:
    """The non-empty complete lines of a JSONL file (``rationales.store.complete_lines``, without their numbers)."""
    return [ln for _, ln in complete_lines(path)]


def summarize_store(path: Path) -> tuple[list[bytes], list[Any], dict[str, Any]]:
    """Validate every line of a rationale store and count its records.

    Returns:
        (lines, records, summary): the complete lines, the unique records in file order (``rationales.store``
        keys), and counts per kind, polarity, kind/polarity, round, backend and source.

    Raises:
        DataError: a line that is not a valid record, naming the file and line.
    """
    numbered = complete_lines(path)
    recs = parse_rationale_lines(numbered, path)
    lines = [ln for _, ln in numbered]

    def count(key) -> dict[str, int]:
        return dict(sorted(Counter(str(key(r)) for r in recs).items()))

    return lines, recs, {"lines": len(lines), "records": len(recs), "by_kind": count(lambda r: r.kind),
                         "by_polarity": count(lambda r: r.polarity),
                         "by_kind_polarity": count(lambda r: f"{r.kind}/{r.polarity}"),
                         "by_round": count(lambda r: r.round), "by_backend": count(lambda r: r.backend),
                         "by_source": count(lambda r: r.source)}


def control_sizes(run_dir: Path) -> dict[str, Optional[dict[str, int]]]:
    """Bytes and lines of each control store of the run (None when absent)."""
    out: dict[str, Optional[dict[str, int]]] = {}
    for name in CONTROL_STORES:
        p = run_dir / name
        out[name] = ({"bytes": p.stat().st_size, "lines": len(store_lines(p))} if p.is_file() else None)
    return out


def slim_notebook(src: Path, dst: Path, max_image_kb: float) -> list[str]:
    """Copy an executed notebook, replacing every output image larger than ``max_image_kb`` (decoded) with a
    ``text/plain`` note; returns ``"notebook: cell N (K KB)"`` for each image dropped."""
    try:
        nb = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{src}: not a readable notebook ({e})") from e
    dropped = []
    for ci, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []) or []:
            data = out.get("data")
            if not isinstance(data, dict):
                continue
            for mime in [m for m in IMAGE_MIMES if m in data]:
                v = data[mime]
                text = "".join(v) if isinstance(v, list) else str(v)
                size = len(text) if mime == "image/svg+xml" else len(base64.b64decode(text.encode(), validate=False))
                if size > max_image_kb * 1000:
                    del data[mime]
                    note = f"[{mime} output of {size / 1000:.0f} KB dropped by `mipd publish` to keep the report small]"
                    data["text/plain"] = note
                    dropped.append(f"{src.name}: cell {ci} ({size / 1000:.0f} KB)")
    if dropped:
        atomic_write_text(dst, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    else:
        shutil.copyfile(src, dst)
    return dropped


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_samples(records: Sequence[Any], world_dir: Optional[Path], image_root: Optional[Path], out: Path,
                  n: int, seed: int, title: str) -> tuple[int, list[str]]:
    """Write ``out/NN_<kind>_<polarity>.png`` and ``out/README.md`` for ``n`` sample rationales.

    Images are read from ``image_root`` (default ``world_dir/images``): a glimpse or unjudged rationale's PNG is
    copied as it is, a gaze rationale's image is drawn with its role's annotated box. An image that is not found is
    counted and named in the README (the rationale is still shown).

    Returns:
        (samples shown, images missing).
    """
    situations = load_world_situations(world_dir) if world_dir is not None else {}
    items = sample_items(build_items(records, situations), n, seed)
    root = image_root if image_root is not None else (world_dir / "images" if world_dir is not None else None)
    out.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    kinds = Counter(f"{it.rationale.kind}/{it.rationale.polarity}" for it in items)
    lines = [f"# Sample rationales of {title}", "",
             f"{len(items)} rationales of the run's `rationales.jsonl`, drawn with seed {seed} (`mipd publish`): "
             + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) + ". "
             "A gaze rationale's image shows its role's annotated box; `unjudged` rationales describe images of the "
             "unlabeled pool (no annotation, no judge). Score and reasons are the judge's verdict.", ""]
    for k, it in enumerate(items, 1):
        r = it.rationale
        src = root / r.image if root is not None else None
        drawn_kind = r.kind == "gaze" and bool(r.role)
        name = f"{k:02d}_{r.kind}_{r.polarity}{'.png' if drawn_kind or src is None else src.suffix.lower()}"
        pic = ""
        if src is not None and src.is_file():
            try:
                if drawn_kind:
                    with Image.open(src) as im:
                        drawn = render_item(it, im.convert("RGB"))
                    drawn.thumbnail((MAX_SAMPLE_SIDE, MAX_SAMPLE_SIDE))  # real-mode photos: keep the report small
                    with atomic_path(out / name) as tmp:
                        drawn.save(tmp, format="PNG")
                else:
                    shutil.copyfile(src, out / name)
                pic = f"![{r.kind} {r.polarity}: {r.image}]({name})"
            except OSError as e:  # PIL's UnidentifiedImageError is an OSError
                missing.append(f"{src} (cannot be read: {e})")
                pic = f"*image cannot be read: `{src}`*"
        else:
            missing.append(str(src) if src is not None else r.image)
            pic = f"*image not found: `{src if src is not None else r.image}`*"
        reasons = "; ".join(str(x) for x in ((r.verdict or {}).get("reasons") or [])) or "-"
        score = "-" if r.score is None else f"{r.score:g}"
        lines += [f"## {k}. {r.kind} · {r.polarity}" + (f" · {r.role}" if r.role else ""), "", pic, "",
                  f"> {_md(r.text)}", "",
                  "| image | annotated verb | kind | role | polarity | round | score | verdict | source |",
                  "|---|---|---|---|---|---|---|---|---|",
                  f"| `{r.image}` | {_md(it.verb_label)} | {r.kind} | {_md(r.role or '-')} | {r.polarity} | "
                  f"{r.round} | {score} | {_md(verdict_text(r))} | {r.source} |", "",
                  f"Reasons: {_md(reasons)}", ""]
    if missing:
        lines += [f"{len(missing)} image(s) not found or unreadable: " + ", ".join(f"`{m}`" for m in missing), ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    return len(items), missing


# -- the command ------------------------------------------------------------------------------------------------------
def publish(run_dir: str | os.PathLike, dest: str | os.PathLike, sample_lines_n: int = 2000, seed: int = 0,
            samples: int = 20, allow_partial: bool = False, world_dir: Optional[str | os.PathLike] = None,
            image_root: Optional[str | os.PathLike] = None, max_image_kb: float = 300.0,
            max_bytes: Optional[int] = None, redact_secrets: bool = False) -> PublishReport:
    """Publish ``run_dir`` as the report folder ``dest`` (see the module docstring).

    Args:
        run_dir: a run folder made by ``mipd run``.
        dest: the report folder to (re)place.
        sample_lines_n: lines of ``rationales.jsonl`` in ``rationales_sample.jsonl``.
        seed: seeds the line sample and the sample rationales.
        samples: sample rationales with images in ``samples/`` (0: none).
        allow_partial: publish a run whose state is not ``done`` (the copy's README says so).
        world_dir: the world the run used (default: the one in ``status.json``); needed for the samples' images.
        image_root: folder of the images (default ``world_dir/images``).
        max_image_kb: notebook output images larger than this are dropped.
        max_bytes: size limit of the copy (default :data:`MAX_BYTES`).
        redact_secrets: publish a copy in which secrets were found (:func:`mipd_kit.redaction.find_secrets`) with
            them replaced by ``[REDACTED]``; without it such a copy is refused.

    Raises:
        PublishError: the run is not finished (without ``allow_partial``), the copy exceeds the limit, a file of
            the copy holds a key-like string, a configured key or URL credentials (without ``redact_secrets``), or
            the samples need a world folder that is absent. ``dest`` is then untouched.
        DataError: a bad line in the rationale store (file and line named).
    """
    run = Path(run_dir).resolve()
    dst = Path(dest).resolve()
    limit = MAX_BYTES if max_bytes is None else max_bytes
    if not run.is_dir():
        raise PublishError(f"{run}: no such run folder")
    if dst == run or run in dst.parents:
        raise PublishError(f"{dst}: the destination must lie outside the run folder {run}")
    try:
        status = read_status(run, required=True)
    except PipelineError as e:
        raise PublishError(str(e)) from e
    state = str(status.get("state"))
    if state != "done" and not allow_partial:
        where = f" (failed at stage {status.get('failed_stage')})" if status.get("failed_stage") else ""
        raise PublishError(f"{run / 'status.json'}: the run's state is {state!r}{where}, not 'done'; finish it "
                           "(`mipd run ... --out RUN_DIR` resumes) or pass --allow-partial to publish it anyway")
    world = Path(world_dir) if world_dir is not None else world_of(status)
    store = run / "rationales.jsonl"
    if samples > 0 and store.is_file() and image_root is None and (world is None or not world.is_dir()):
        raise PublishError(f"the sample rationales need the run's world for their images, and "
                           f"{world if world is not None else 'status.json names no world_dir'}"
                           f"{' is absent' if world is not None else ''}; pass --world DIR (or --samples 0)")

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.publish-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    rep = PublishReport(dest=dst, state=state)
    try:
        tmp.mkdir()
        for name in RUN_FILES + tuple(sorted(p.name for p in run.glob("results_*.md"))):
            if (run / name).is_file():
                shutil.copyfile(run / name, tmp / name)
        if (run / "figures").is_dir():
            shutil.copytree(run / "figures", tmp / "figures")
        if (run / "notebooks").is_dir():
            (tmp / "notebooks").mkdir()
            for nb in sorted((run / "notebooks").glob("*.ipynb")):
                rep.dropped_outputs += slim_notebook(nb, tmp / "notebooks" / nb.name, max_image_kb)
        summary: dict[str, Any] = {"source": str(run), "seed": seed}
        if store.is_file():
            lines, records, counts = summarize_store(store)
            picked = sample_lines(lines, sample_lines_n, seed)
            atomic_write_text(tmp / "rationales_sample.jsonl", "".join(ln.decode() + "\n" for ln in picked))
            rep.rationale_lines, rep.sample_lines = len(lines), len(picked)
            summary.update(counts)
            summary["sample"] = {"file": "rationales_sample.jsonl", "lines": len(picked), "seed": seed}
            if samples > 0:
                rep.samples, rep.missing_images = write_samples(
                    records, world, Path(image_root) if image_root is not None else None, tmp / "samples", samples,
                    seed, f"run {status.get('run_id') or run.name}")
        else:
            summary["rationales"] = None
        summary["controls"] = control_sizes(run)
        atomic_write_text(tmp / "rationales_summary.json", dumps(summary, indent=1) + "\n")
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        partial = "" if state == "done" else (
            f" **Partial run: its state is `{state}`"
            + (f" (failed at stage `{status.get('failed_stage')}`)" if status.get("failed_stage") else "")
            + "; published with `--allow-partial`.**")
        readme = (f"Published by `mipd publish` on {when} from run `{status.get('run_id') or run.name}` "
                  f"(state `{state}`, config `{status.get('config')}`).{partial} Results: [results.md](results.md)")
        if store.is_file():
            readme += (f"; a seeded sample (seed {seed}) of {rep.sample_lines} of the run's {rep.rationale_lines} "
                       f"rationale lines: `rationales_sample.jsonl` (counts in `rationales_summary.json`)")
        if rep.samples:
            readme += "; sample rationales with their images: [samples/](samples/README.md)"
        atomic_write_text(tmp / "README.md", readme + ".\n")
        rep.redacted = _check_secrets(tmp, run, redact_secrets)
        rep.bytes = folder_bytes(tmp)
        rep.files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        if rep.bytes > limit:
            raise PublishError(f"the copy of {run} is {rep.bytes / 1e6:.1f} MB, over the limit of {limit / 1e6:.1f} MB; "
                               f"{dst} is unchanged (use fewer --sample-lines / --samples, or prune the run's figures)")
        replace_dir(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return rep


def _check_secrets(copy: Path, run: Path, redact_secrets: bool) -> list[str]:
    """The text files of ``copy`` holding secrets: refused (``PublishError`` naming files and kinds, never values)
    unless ``redact_secrets``, which rewrites them through :func:`mipd_kit.redaction.redact`."""
    found: dict[str, list[str]] = {}
    for p in sorted(copy.rglob("*")):
        if p.is_file() and p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
            try:
                kinds = find_secrets(p.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                continue
            if kinds:
                found[str(p.relative_to(copy))] = kinds
    if found and not redact_secrets:
        shown = "; ".join(f"{f} ({', '.join(k)})" for f, k in list(found.items())[:10])
        raise PublishError(f"{run}: {len(found)} file(s) of the report would hold secrets: {shown}; nothing was "
                           "published. Rotate the key, then pass --redact-secrets to publish with [REDACTED] in "
                           "their place")
    for f in found:
        redact_file(copy / f)
    return sorted(found)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd publish RUN_DIR [--to DEST] ...``; exit 0 when published, 2 when refused."""
    ap = argparse.ArgumentParser(prog="mipd publish", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="the run folder (reports/<run-id>)")
    ap.add_argument("--to", default="reports/latest-default", help="the report folder to replace")
    ap.add_argument("--sample-lines", type=int, default=2000, help="lines of rationales.jsonl to sample")
    ap.add_argument("--seed", type=int, default=0, help="seeds the line sample and the sample rationales")
    ap.add_argument("--samples", type=int, default=20, help="sample rationales with images in samples/ (0: none)")
    ap.add_argument("--allow-partial", action="store_true", help="publish a run whose state is not done")
    ap.add_argument("--world", default=None, help="the run's world folder (default: the one in status.json)")
    ap.add_argument("--image-root", default=None, help="folder of the images (default: WORLD/images)")
    ap.add_argument("--max-image-kb", type=float, default=300.0,
                    help="notebook output images larger than this are dropped from the copy")
    ap.add_argument("--redact-secrets", action="store_true",
                    help="publish a run whose files hold a key-like string, a configured key or URL credentials, "
                         "with [REDACTED] in their place (refused without it)")
    args = ap.parse_args(None if argv is None else list(argv))
    if args.sample_lines < 0 or args.samples < 0:
        ap.error("--sample-lines and --samples must be >= 0")
    try:
        rep = publish(args.run_dir, args.to, args.sample_lines, args.seed, args.samples, args.allow_partial,
                      args.world, args.image_root, args.max_image_kb, redact_secrets=args.redact_secrets)
    except (PublishError, DataError) as e:
        print(f"mipd publish: {e}", file=sys.stderr)
        return 2
    print(f"published {Path(args.run_dir)} (state {rep.state}) -> {rep.dest}: {len(rep.files)} files, "
          f"{rep.bytes / 1e6:.2f} MB (limit {MAX_BYTES / 1e6:.0f} MB)")
    if (rep.dest / "rationales_sample.jsonl").is_file():
        print(f"  rationales_sample.jsonl: {rep.sample_lines} of {rep.rationale_lines} lines; samples/: "
              f"{rep.samples} rationales, {len(rep.missing_images)} image(s) missing")
    else:
        print("  the run has no rationales.jsonl: no rationale sample, no samples/")
    for m in rep.missing_images:
        print(f"  image not found: {m}")
    if rep.redacted:
        print(f"  secrets replaced by [REDACTED] in {len(rep.redacted)} file(s): {', '.join(rep.redacted)}")
    if rep.dropped_outputs:
        print(f"  {len(rep.dropped_outputs)} notebook output image(s) over {args.max_image_kb:g} KB dropped: "
              + ", ".join(rep.dropped_outputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
