"""Download the real datasets (for users with internet; never called by tests except with ``--dry-run``).

``mipd data download swig|hico|vcoco --to DIR [--dry-run] [--only PATTERN] [--no-images] [--extract]``

Sources (public URLs of the dataset authors and of the repositories the project's readers follow):

* **SWiG** (Pratt et al., ECCV 2020, https://github.com/allenai/swig): ``SWiG_jsons/{train,dev,test}.json`` and
  ``imsitu_space.json`` from the repository, images ``images_512.zip`` from the authors' S3 bucket
  (link in the SWiG README).
* **HICO-DET** (Chao et al., WACV 2018, http://www-personal.umich.edu/~ywchao/hico/): images and MATLAB
  annotations ``hico_20160224_det.tar.gz`` (Google Drive id from the authors' page, as used by
  fredzzhang/hicodet ``download.sh``), and the JSON instance files ``instances_{train,test}2015.json`` of
  https://github.com/fredzzhang/hicodet (the format our reader and ``mipd eval-hico`` read).
* **V-COCO** (Gupta & Malik, 2015, https://github.com/s-gupta/v-coco): the action/role annotations
  ``data/vcoco/vcoco_{train,val,test}.json`` and split ids, fredzzhang/vcoco's ``instances_vcoco_*.json``
  (boxes inline), and COCO 2014 images and annotations from images.cocodataset.org.

Downloads stream to ``name.part`` and resume with an HTTP Range request when the server allows it; each file's
size and SHA-256 are printed (and written to ``DIR/SHA256SUMS``). GitHub files come from pinned commits
(``REVISIONS``); ``mipd data prepare`` (``mipd_kit.data.prepare``) also verifies every file's checksum and lays out
the world folder.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import http.cookiejar
import re
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

GH = "https://raw.githubusercontent.com"
#: the commits every GitHub file is taken from (the newest commit of each repository when the table was written)
REVISIONS: dict[str, str] = {
    "allenai/swig": "70f2cb63aae3f4309bcb520eea1e14805e8c6c42",
    "rowanz/verb-attributes": "a04931e3b2ef5be859bdb4c0f123148b194c9d42",
    "fredzzhang/hicodet": "e4e234045e0a4128995a2e45e841b3ebe64eda0b",
    "fredzzhang/vcoco": "cb13e3d3cd74158b41acee09979e25e875c02053",
    "s-gupta/v-coco": "489cc4db74f2f10ab4b134f67da3874afbf245ab",
}


def gh(repo: str, path: str) -> str:
    """The raw URL of ``path`` in ``repo`` at its pinned commit (``REVISIONS``)."""
    return f"{GH}/{repo}/{REVISIONS[repo]}/{path}"


@dataclass(frozen=True)
class Source:
    """One file to fetch.

    Attributes:
        url: public URL (``gdrive:<id>`` for a Google Drive file).
        dest: path below the target folder.
        images: part of the (large) image download, skipped with ``--no-images``.
        note: what it is.
    """

    url: str
    dest: str
    images: bool = False
    note: str = ""


SOURCES: dict[str, list[Source]] = {
    "swig": [
        *[Source(gh("allenai/swig", f"SWiG_jsons/{n}.json"), f"SWiG_jsons/{n}.json", note=f"SWiG {n} annotations")
          for n in ("train", "dev", "test")],
        Source(gh("allenai/swig", "SWiG_jsons/imsitu_space.json"), "SWiG_jsons/imsitu_space.json",
               note="imSitu frame space: verbs, roles, nouns"),
        Source(gh("allenai/swig", "global_utils/train_classes.csv"), "global_utils/train_classes.csv",
               note="noun classes of JSL/CoFormer"),
        Source("https://swig-data-weights.s3.us-east-2.amazonaws.com/images_512.zip", "images_512.zip",
               images=True, note="SWiG images resized to 512 px (about 15 GB)"),
    ],
    "hico": [
        Source(gh("fredzzhang/hicodet", "instances_train2015.json"), "instances_train2015.json",
               note="HICO-DET train instances (fredzzhang/hicodet JSON format)"),
        Source(gh("fredzzhang/hicodet", "instances_test2015.json"), "instances_test2015.json",
               note="HICO-DET test instances"),
        Source("gdrive:1QZcJmGVlF9f4h-XLWe9Gkmnmj2z1gSnk", "hico_20160224_det.tar.gz", images=True,
               note="HICO-DET images + MATLAB annotations from the dataset authors (about 7.5 GB)"),
    ],
    "vcoco": [
        *[Source(gh("s-gupta/v-coco", f"data/vcoco/vcoco_{n}.json"), f"v-coco/data/vcoco/vcoco_{n}.json",
                 note=f"official V-COCO {n} action/role annotations") for n in ("train", "val", "test")],
        *[Source(gh("s-gupta/v-coco", f"data/splits/vcoco_{n}.ids"), f"v-coco/data/splits/vcoco_{n}.ids",
                 note="COCO image ids of the split") for n in ("train", "val", "test", "trainval")],
        *[Source(gh("fredzzhang/vcoco", f"instances_vcoco_{n}.json"), f"instances_vcoco_{n}.json",
                 note="V-COCO with inline boxes (fredzzhang/vcoco)") for n in ("trainval", "test")],
        Source("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
               "coco/annotations_trainval2014.zip", note="COCO 2014 annotations (V-COCO boxes live here)"),
        Source("http://images.cocodataset.org/zips/train2014.zip", "coco/train2014.zip", images=True,
               note="COCO 2014 train images (V-COCO train/val/test all come from it, about 13 GB)"),
        Source("http://images.cocodataset.org/zips/val2014.zip", "coco/val2014.zip", images=True,
               note="COCO 2014 val images (about 6 GB)"),
    ],
}

CHUNK = 1 << 20
USER_AGENT = "mipd_kit-downloader/1.0 (+https://github.com/)"


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _open(url: str, start: int, opener: urllib.request.OpenerDirector):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start:
        req.add_header("Range", f"bytes={start}-")
    return opener.open(req, timeout=60)


def _gdrive_url(file_id: str, opener: urllib.request.OpenerDirector) -> str:
    """Resolve Google Drive's "file too large to scan" confirmation page into a direct download URL."""
    base = f"https://drive.google.com/uc?export=download&id={file_id}"
    with _open(base, 0, opener) as r:
        ctype = r.headers.get("Content-Type", "")
        if "text/html" not in ctype:
            return base
        page = r.read(1 << 20).decode("utf-8", "replace")
    form = re.search(r'action="([^"]+)"', page)
    params = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page))
    if form and params:
        from urllib.parse import urlencode

        return form.group(1).replace("&amp;", "&") + "?" + urlencode(params)
    m = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    return f"{base}&confirm={m.group(1) if m else 't'}"


def fetch(src: Source, to: Path, opener: Optional[urllib.request.OpenerDirector] = None) -> Path:
    """Download one file to ``to / src.dest``, resuming a ``.part`` file when possible.

    Returns:
        The final path (skipped when it already exists).
    """
    opener = opener or urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    dest = to / src.dest
    if dest.exists():
        print(f"  exists  {dest} ({_human(dest.stat().st_size)})")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    from mipd_kit.fileio import file_lock
    with file_lock(dest.with_name(f".{dest.name}.lock")):  # a second process waits, then finds the file
        if dest.exists():
            print(f"  exists  {dest} ({_human(dest.stat().st_size)})")
            return dest
        return _download(src, dest, to, opener)


def _download(src: Source, dest: Path, to: Path, opener: urllib.request.OpenerDirector) -> Path:
    """The transfer itself (the caller holds ``dest``'s lock)."""
    part = dest.with_name(dest.name + ".part")
    url = _gdrive_url(src.url.split(":", 1)[1], opener) if src.url.startswith("gdrive:") else src.url
    start = part.stat().st_size if part.exists() else 0
    with _open(url, start, opener) as r:
        status = getattr(r, "status", 200)
        if start and status != 206:
            start = 0  # server ignored the Range request: start over
        total = r.headers.get("Content-Length")
        total_n = int(total) + start if total and total.isdigit() else None
        t0, done, last = time.time(), start, 0.0
        with open(part, "ab" if start else "wb") as f:
            for chunk in iter(lambda: r.read(CHUNK), b""):
                f.write(chunk)
                done += len(chunk)
                if time.time() - last > 2:
                    last = time.time()
                    pct = f" {100 * done / total_n:5.1f}%" if total_n else ""
                    rate = (done - start) / max(time.time() - t0, 1e-6)
                    print(f"\r  {src.dest}: {_human(done)}{pct} at {_human(rate)}/s", end="", flush=True)
    if total_n is not None and part.stat().st_size != total_n:
        raise OSError(f"{url}: got {part.stat().st_size} bytes, expected {total_n}; re-run to resume")
    from mipd_kit.fileio import move_into_place
    move_into_place(part, dest)
    digest = sha256_file(dest)
    print(f"\r  done    {dest} {_human(dest.stat().st_size)} sha256 {digest}")
    with open(to / "SHA256SUMS", "a") as f:
        f.write(f"{digest}  {src.dest}\n")
    return dest


def extract(path: Path) -> None:
    """Unpack a ``.zip`` / ``.tar.gz`` beside itself (members may not escape the folder)."""
    out = path.parent
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            for m in z.namelist():
                if not (out / m).resolve().is_relative_to(out.resolve()):
                    raise OSError(f"{path}: member {m!r} escapes the target folder")
            z.extractall(out)
    elif path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as t:
            t.extractall(out, filter="data")
    print(f"  extracted {path.name} into {out}")


def plan(dataset: str, images: bool = True, only: Optional[str] = None) -> list[Source]:
    """The files a download would fetch."""
    if dataset not in SOURCES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(SOURCES)}")
    out = [s for s in SOURCES[dataset] if images or not s.images]
    if only:
        out = [s for s in out if fnmatch.fnmatch(s.dest, only) or fnmatch.fnmatch(Path(s.dest).name, only)]
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd data download swig|hico|vcoco --to DIR [--dry-run] [--no-images] [--only GLOB] [--extract]``."""
    ap = argparse.ArgumentParser(prog="mipd data", description="Download real datasets (public URLs).")
    sub = ap.add_subparsers(dest="action", required=True)
    d = sub.add_parser("download", help="download a dataset")
    d.add_argument("dataset", choices=sorted(SOURCES))
    d.add_argument("--to", required=True, help="target folder")
    d.add_argument("--dry-run", action="store_true", help="print the URLs and targets, download nothing")
    d.add_argument("--no-images", action="store_true", help="annotations only")
    d.add_argument("--only", help="only files whose target path or name matches this glob")
    d.add_argument("--extract", action="store_true", help="unpack archives after downloading")
    a = ap.parse_args(list(argv) if argv is not None else None)
    to = Path(a.to)
    files = plan(a.dataset, images=not a.no_images, only=a.only)
    if not files:
        print(f"mipd data: nothing matches --only {a.only!r}", file=sys.stderr)
        return 2
    print(f"{a.dataset}: {len(files)} files -> {to}")
    if a.dry_run:
        for s in files:
            print(f"  {s.url}\n      -> {to / s.dest}   ({s.note})")
        return 0
    failed = []
    for s in files:
        try:
            p = fetch(s, to)
            if a.extract and (p.suffix == ".zip" or p.name.endswith(".tar.gz")):
                extract(p)
        except (urllib.error.URLError, OSError) as e:
            print(f"\n  FAILED  {s.url}: {e}", file=sys.stderr)
            failed.append(s.dest)
    if failed:
        print(f"{len(failed)} files failed ({', '.join(failed)}); re-run to resume", file=sys.stderr)
        return 1
    return 0
