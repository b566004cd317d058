"""``mipd data prepare``: pinned files verified against their checksums, resumed downloads, archives extracted once,
the world folders laid out as the configs read them; offline, against a file server on 127.0.0.1 (with HTTP Range)
and small fixture archives. A corrupted download is refused naming the file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from conftest import shared_file
from mipd_kit.data import prepare as P


class FileServer:
    """Serves a folder on 127.0.0.1, honouring ``Range: bytes=N-``; counts the bytes sent per path."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.sent = folder, {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                p = server.folder / self.path.lstrip("/")
                if not p.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = p.read_bytes()
                m = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
                start = int(m.group(1)) if m else 0
                self.send_response(206 if m else 200)
                if m:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])
                server.sent[self.path.lstrip("/")] = server.sent.get(self.path.lstrip("/"), 0) + len(data) - start

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[FileServer]:
    (tmp_path / "mirror").mkdir()
    s = FileServer(tmp_path / "mirror")
    yield s
    s.close()


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def git_blob(p: Path) -> str:
    """``git hash-object`` when git is there, else the same formula written out."""
    if shutil.which("git"):
        return subprocess.run(["git", "hash-object", str(p)], capture_output=True, text=True, check=True).stdout.strip()
    data = p.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def swig_mirror(tmp_path: Path, mirror: Path) -> list[P.Pinned]:
    """A tiny SWiG release in the layout of the pinned table, and its table (git blobs for the JSONs, sha256 for
    the split files, the image archive unpinned)."""
    from mipd_kit.student.testing import write_tiny_world

    src = tmp_path / "src"
    write_tiny_world(src, n_per_verb=2)
    m = mirror / "SWiG_jsons"
    m.mkdir(parents=True)
    for n in ("train", "dev", "test", "imsitu_space"):
        shutil.copy(src / f"{n}.json", m / f"{n}.json")
    verbs = sorted(json.loads((src / "imsitu_space.json").read_text())["verbs"])
    zc = mirror / "zellers-choi"
    zc.mkdir()
    (zc / "imsitu_verbs.txt").write_text("\n".join(v[:-3] for v in verbs) + "\n")  # riding -> rid: a lemma
    with open(zc / "attributes_split.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["verb", "train", "test", "val", "in_imsitu"])
        for v in verbs:
            part = "test" if v in ("throwing", "carrying") else "val" if v == "kicking" else "train"
            w.writerow([v[:-3], *(str(part == k) for k in ("train", "test", "val")), "True"])
    with zipfile.ZipFile(mirror / "images_512.zip", "w") as z:
        for im in sorted((src / "images").iterdir()):
            z.write(im, f"images_512/{im.name}")
    pins = [P.Pinned(f"https://example.invalid/{n}", f"SWiG_jsons/{n}.json", git_blob=git_blob(m / f"{n}.json"))
            for n in ("train", "dev", "test", "imsitu_space")]
    pins += [P.Pinned("https://example.invalid/csv", "zellers-choi/attributes_split.csv",
                      sha256=sha256(zc / "attributes_split.csv")),
             P.Pinned("https://example.invalid/lemmas", "zellers-choi/imsitu_verbs.txt",
                      sha256=sha256(zc / "imsitu_verbs.txt")),
             P.Pinned("https://example.invalid/zip", "images_512.zip", archive=True)]
    return pins


def test_swig_world_is_laid_out_resumed_and_checked(tmp_path: Path, server: FileServer, root: Path, capsys) -> None:
    pins = swig_mirror(tmp_path, server.folder)
    data = tmp_path / "data"
    zip_bytes = (server.folder / "images_512.zip").read_bytes()
    (data / "swig").mkdir(parents=True)
    (data / "swig" / "images_512.zip.part").write_bytes(zip_bytes[:len(zip_bytes) // 2])  # a killed download
    world = P.prepare("swig", data, table=pins, mirror=server.url)
    assert world == data / "swig" / "world"
    assert server.sent["images_512.zip"] == len(zip_bytes) - len(zip_bytes) // 2  # resumed, not restarted
    split = json.loads((world / "ov_split.json").read_text())
    assert sorted(split["unseen"]) == ["carrying", "throwing"] and split["val"] == ["kicking"]
    assert "kicking" not in split["seen"] and "zellers-choi" in split["rule"]
    assert (world / "train.json").is_symlink() and (world / "images").is_dir()
    assert json.loads((data / "swig" / "pins.json").read_text())["images_512.zip"] == hashlib.sha256(
        zip_bytes).hexdigest()  # unpinned archive: recorded at its first download
    # a second run downloads nothing and verifies everything again
    before = dict(server.sent)
    P.prepare("swig", data, table=pins, mirror=server.url)
    assert server.sent == before
    # the world is what configs/swig_real.yaml reads: mipd check finds its files, images, split and checksums
    from mipd_kit.app import check
    capsys.readouterr()
    check.main(["--config", str(root / "configs" / "swig_real.yaml"), "--set", f"world_dir={world}",
                "--set", f"cache_dir={tmp_path / 'cache'}",
                "--set", "stages.rationales.params.generator.openai.base_url=http://127.0.0.1:9/v1"])
    out = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()[:-1]}
    assert out["world"].startswith("ok ") and out["split"].startswith("ok ") and out["checksum"].startswith("ok ")


def test_a_corrupted_download_is_refused_naming_the_file(tmp_path: Path, server: FileServer) -> None:
    pins = swig_mirror(tmp_path, server.folder)
    csv_path = server.folder / "zellers-choi" / "attributes_split.csv"
    csv_path.write_text(csv_path.read_text().replace("True", "true", 1))  # one byte changed upstream
    data = tmp_path / "data"
    with pytest.raises(P.ChecksumError, match=r"attributes_split\.csv: sha256 [0-9a-f]{64} does not match"):
        P.prepare("swig", data, table=pins, mirror=server.url, images=False)
    got = data / "swig" / "zellers-choi"
    assert not (got / "attributes_split.csv").exists() and (got / "attributes_split.csv.rejected").exists()
    assert not (data / "swig" / "world").exists()  # nothing laid out from refused files
    # a changed JSON is caught by its git blob id
    js = server.folder / "SWiG_jsons" / "dev.json"
    js.write_text(js.read_text() + " ")
    with pytest.raises(P.ChecksumError, match=r"dev\.json: git blob id"):
        P.prepare("swig", tmp_path / "data2", table=pins, mirror=server.url, images=False)


def test_cli_refuses_a_file_that_is_not_the_pinned_one(tmp_path: Path, server: FileServer, capsys) -> None:
    """The real pinned table through ``mipd data prepare --mirror``: a train file that is not the pinned revision's."""
    from mipd_kit.app import cli
    (server.folder / "instances_train2015.json").write_text('{"filenames": []}')
    rc = cli.main(["data", "prepare", "hico", "--root", str(tmp_path / "d"), "--mirror", server.url, "--no-images"])
    err = capsys.readouterr().err
    assert rc == 2 and "instances_train2015.json: git blob id" in err and "e4e234045e0a" in err


def test_hico_world_with_prompts_from_the_hoi_list(tmp_path: Path, server: FileServer) -> None:
    m = server.folder
    inst = {"objects": ["horse", "umbrella"], "verbs": ["no_interaction", "ride", "stab"],
            "correspondence": [[0, 0, 1], [1, 0, 0], [2, 1, 2]], "annotation": [], "empty": [], "size": []}
    for split, names in (("train", ["HICO_train2015_00000001.jpg"]), ("test", ["HICO_test2015_00000001.jpg"])):
        (m / f"instances_{split}2015.json").write_text(json.dumps({**inst, "filenames": names}))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for split in ("train", "test"):
            info = tarfile.TarInfo(f"hico_20160224_det/images/{split}2015/HICO_{split}2015_00000001.jpg")
            info.size = 3
            t.addfile(info, io.BytesIO(b"jpg"))
    (m / "hico_20160224_det.tar.gz").write_bytes(buf.getvalue())
    pins = [P.Pinned("x", f"instances_{s}2015.json", sha256=sha256(m / f"instances_{s}2015.json"))
            for s in ("train", "test")] + [P.Pinned("x", "hico_20160224_det.tar.gz", archive=True)]
    world = P.prepare("hico", tmp_path / "d", table=pins, mirror=server.url)
    assert json.loads((world / "hoi_prompts.json").read_text()) == [
        "A photo of a person riding a horse", "A photo of a person and a horse",
        "A photo of a person stabbing an umbrella"]
    assert (world / "images" / "HICO_train2015_00000001.jpg").read_bytes() == b"jpg"
    assert (world / "images" / "HICO_test2015_00000001.jpg").is_symlink()
    from mipd_kit.data.hico import load_zero_shot_splits
    assert {"rare_first", "unseen_verb"} <= set(load_zero_shot_splits(world / "hoi_zero_shot.json"))
    assert (tmp_path / "d" / "hico" / ".extracted-hico_20160224_det.tar.gz").exists()


def test_prompts_from_the_official_list_match_the_hicodet_phrases() -> None:
    """Built from the instance file's HOI list, the 600 phrases equal fredzzhang/hicodet's prompts.json but where
    that file misspells a gerund ("stabing") or adds a word ("waving at")."""
    built = P.hoi_prompts(shared_file("fredzzhang__hicodet/instances_test2015.json"))
    ref = json.loads(shared_file("fredzzhang__hicodet/prompts.json").read_text())
    assert len(built) == len(ref) == 600
    diff = {ref[i]: built[i] for i in range(600) if built[i] != ref[i]}
    assert len(diff) <= 13, diff
    assert all(re.search(r"(stabing|taging|stiring|fliping|hiting|draging|ziping|waving at)", r) for r in diff)


def test_the_pinned_table_is_honest() -> None:
    """Every GitHub file names a commit; every file but the unpublished archives has a checksum; the sha256 values
    equal the project's reference copies where those exist."""
    zc = "rowanz__verb-attributes/data/VerbsWithAttributes"
    copies = {"zellers-choi/attributes_split.csv": f"{zc}/attributes_split.csv",
              "zellers-choi/imsitu_verbs.txt": f"{zc}/imsitu_verbs.txt",
              "instances_test2015.json": "fredzzhang__hicodet/instances_test2015.json",
              "instances_vcoco_test.json": "fredzzhang__vcoco/instances_vcoco_test.json",
              "instances_vcoco_trainval.json": "fredzzhang__vcoco/instances_vcoco_trainval.json"}
    for ds, pins in P.TABLE.items():
        for p in pins:
            if "githubusercontent" in p.url:
                assert re.search(r"/[0-9a-f]{40}/", p.url), p.url
            assert p.archive or p.sha256 or p.git_blob, f"{ds}: {p.dest} has no checksum"
            assert not p.sha256 or re.fullmatch(r"[0-9a-f]{64}", p.sha256)
            assert not p.git_blob or re.fullmatch(r"[0-9a-f]{40}", p.git_blob)
            if p.dest in copies:
                assert P.sha256_file(shared_file(copies[p.dest])) == p.sha256, p.dest
                assert P.verify(shared_file(copies[p.dest]), p, {}) == p.sha256
