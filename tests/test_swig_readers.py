"""SWiG / imSitu readers and writers: real small files (skipped when ../shared/data is absent), exact
round trips, and bad inputs naming the file and record."""

from __future__ import annotations

import json

import pytest

from mipd_kit.data.records import DataError, FrameSpace, NounDef, Situation, VerbDef
from mipd_kit.data.swig import (frame_space_to_json, load_frame_space, load_frame_space_from_imsitu_lists,
                                load_situations, read_json, template_roles, verb_counts, write_frame_space,
                                write_situations)
from tests.conftest import shared_file

# The example of the SWiG README (allenai/swig), plus a second record.
SWIG_SAMPLE = {
    "hitchhiking_238.jpg": {
        "verb": "hitchhiking", "height": 683, "width": 512,
        "bb": {"place": [-1, -1, -1, -1], "agent": [195, 282, 380, 554]},
        "frames": [{"place": "n03519981", "agent": "n10287213"}, {"place": "n03519981", "agent": "n10287213"},
                   {"place": "n04096066", "agent": "n10287213"}]},
    "drinking_1.jpg": {
        "verb": "drinking", "height": 400, "width": 300,
        "bb": {"agent": [0.5, 1.25, 100, 200], "liquid": [-1, -1, -1, -1], "container": [10, 10, 300, 400],
               "place": [-1, -1, -1, -1]},
        "frames": [{"agent": "n10287213", "liquid": "", "container": "n03519981", "place": ""}] * 3},
}

SPACE_SAMPLE = {
    "nouns": {"n10287213": {"gloss": ["man", "adult male"], "def": "an adult person who is male"},
              "n03519981": {"gloss": ["highway", "main road"], "def": "a major road"},
              "n04096066": {"gloss": ["road", "route"], "def": "an open way"}},
    "verbs": {
        "hitchhiking": {"framenet": "Travel", "abstract": "the AGENT hitchhikes at a PLACE", "def": "travel by...",
                        "order": ["agent", "place"],
                        "roles": {"place": {"framenet": "place", "def": "where"},
                                  "agent": {"framenet": "traveler", "def": "who"}}},
        "drinking": {"framenet": "Ingestion", "abstract": "the AGENT drinks a LIQUID from a CONTAINER at a PLACE",
                     "def": "take (a liquid) into the mouth and swallow",
                     "order": ["agent", "liquid", "container", "place"],
                     "roles": {"place": {"framenet": "place", "def": "The location"},
                               "container": {"framenet": "source", "def": "The container"},
                               "liquid": {"framenet": "ingestibles", "def": "The liquid"},
                               "agent": {"framenet": "ingestor", "def": "The drinker"}}}},
}


def write(tmp_path, name, obj_or_text):
    p = tmp_path / name
    p.write_text(obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text))
    return p


# ------------------------------------------------------------------------------------------ frame space


def test_frame_space_roundtrip_exact(tmp_path):
    p = write(tmp_path, "imsitu_space.json", SPACE_SAMPLE)
    sp = load_frame_space(p)
    assert sp.verbs["drinking"].roles == ("agent", "liquid", "container", "place")
    assert sp.verbs["drinking"].role_defs["liquid"] == "The liquid"
    assert sp.verbs["drinking"].role_framenet["container"] == "source"
    assert sp.nouns["n10287213"].gloss == ("man", "adult male") and sp.noun_name("n10287213") == "man"
    assert sp.noun_name("") == ""
    out = tmp_path / "out" / "space.json"
    write_frame_space(out, sp)
    assert json.loads(out.read_text()) == SPACE_SAMPLE == frame_space_to_json(sp)
    assert not list(out.parent.glob("*.tmp"))


def test_frame_space_from_real_imsitu_lists(shared_data, tmp_path):
    sp = load_frame_space_from_imsitu_lists(shared_data)
    assert len(sp.verbs) == 504 and len(sp.nouns) == 11789
    assert sp.verbs["drinking"].roles == ("agent", "liquid", "container", "place")
    assert sp.verbs["drinking"].abstract == "AGENT drinks LIQUID from CONTAINER at PLACE"
    assert sp.verbs["drinking"].definition == "" and sp.verbs["drinking"].role_defs == {}  # documented gap
    assert sp.nouns["n10287213"].gloss  # first WordNet gloss
    assert "talking:manner" in sp.source and "no verb/role/noun definitions" in sp.source
    roles = {r for v in sp.verbs.values() for r in v.roles}
    role_ids = {ln.split("\t")[1] for ln in shared_file("my89__imSitu/evaluation/role_id.tab").read_text().split("\n") if ln}
    assert roles <= role_ids
    out = tmp_path / "space.json"
    write_frame_space(out, sp)
    back = load_frame_space(out)
    assert back.verbs == sp.verbs and back.nouns == sp.nouns


def test_template_roles():
    assert template_roles("AGENT joins ITEM1 and ITEM2 with CONNECTOR at PLACE") == [
        "agent", "item1", "item2", "connector", "place"]
    assert template_roles("AGENT dampens ITEMs with LIQUID at PLACE") == ["agent", "item", "liquid", "place"]


def test_imsitu_lists_missing_dir(tmp_path):
    with pytest.raises(DataError, match="verb_id.tab: file not found"):
        load_frame_space_from_imsitu_lists(tmp_path)


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.pop("nouns"), "needs top-level keys"),
    (lambda d: d["verbs"]["drinking"].pop("order"), "verb 'drinking': missing key 'order'"),
    (lambda d: d["verbs"]["drinking"]["order"].append("tool"), r"roles \['tool'\] in 'order' have no entry"),
    (lambda d: d["verbs"]["drinking"]["order"].remove("place"), r"roles \['place'\] in 'roles' are not in 'order'"),
    (lambda d: d["nouns"]["n04096066"].update(gloss="road"), "'gloss' must be a list"),
    (lambda d: d["verbs"]["drinking"]["roles"].update(place="where"), r"role entries \['place'\] must be objects"),
    (lambda d: d["verbs"]["drinking"].update(abstract=3), "verb 'drinking': expected a string"),
])
def test_frame_space_bad_input(tmp_path, mutate, msg):
    d = json.loads(json.dumps(SPACE_SAMPLE))
    mutate(d)
    p = write(tmp_path, "space.json", d)
    with pytest.raises(DataError, match=msg) as ei:
        load_frame_space(p)
    assert str(p) in str(ei.value)


# ------------------------------------------------------------------------------------------- situations


def test_swig_situations_roundtrip_exact(tmp_path):
    p = write(tmp_path, "dev.json", SWIG_SAMPLE)
    space = load_frame_space(write(tmp_path, "space.json", SPACE_SAMPLE))
    sits = load_situations(p, space)
    s = sits["hitchhiking_238.jpg"]
    assert s.verb == "hitchhiking" and (s.width, s.height) == (512, 683)
    assert s.boxes == {"place": None, "agent": (195.0, 282.0, 380.0, 554.0)}
    assert len(s.frames) == 3 and s.frames[2]["place"] == "n04096066"
    assert sits["drinking_1.jpg"].frames[0]["liquid"] == ""
    out = tmp_path / "copy.json"
    write_situations(out, sits)
    assert json.loads(out.read_text()) == SWIG_SAMPLE
    assert load_situations(out, space) == sits
    assert verb_counts(sits) == {"hitchhiking": 1, "drinking": 1}


@pytest.mark.parametrize("name", ["debug.json", "debug_eval.json"])
def test_real_imsitu_json_roundtrip(shared_data, tmp_path, name):
    src = shared_file(f"LUNAProject22__CLIPSitu/imSitu/{name}")
    space = load_frame_space_from_imsitu_lists(shared_data)
    sits = load_situations(src, space)
    assert len(sits) == 50
    assert all(s.boxes == {} and s.width == 0 and len(s.frames) == 3 for s in sits.values())
    assert all(set(f) == set(space.roles(s.verb)) for s in sits.values() for f in s.frames)
    out = tmp_path / name
    write_situations(out, sits)
    assert json.loads(out.read_text()) == json.loads(src.read_text())
    assert load_situations(out) == sits


def test_write_situations_rejects_duplicates(tmp_path):
    s = Situation("a.jpg", "v", 0, 0, {}, ({"r": "n"},))
    with pytest.raises(DataError, match="duplicated image 'a.jpg'"):
        write_situations(tmp_path / "x.json", [s, s])


def _bad(d):
    return json.loads(json.dumps(d))


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d["drinking_1.jpg"].pop("verb"), "image 'drinking_1.jpg': missing key 'verb'"),
    (lambda d: d["drinking_1.jpg"].pop("frames"), "image 'drinking_1.jpg': missing key 'frames'"),
    (lambda d: d["drinking_1.jpg"].update(verb="sipping"), "unknown verb 'sipping'"),
    (lambda d: d["drinking_1.jpg"]["frames"][1].update(agent="n999"), "frame 1 role 'agent': unknown noun 'n999'"),
    (lambda d: d["drinking_1.jpg"]["frames"][0].update(tool=""), r"frame 0 has roles \['tool'\] not in the order"),
    (lambda d: d["drinking_1.jpg"]["frames"][2].pop("place"), r"frame 2 lacks roles \['place'\]"),
    (lambda d: d["drinking_1.jpg"]["bb"].update(agent=[100, 1, 50, 200]), "x2 < x1"),
    (lambda d: d["drinking_1.jpg"]["bb"].update(agent=[0, 0, 310, 200]), "outside the 300x400 image"),
    (lambda d: d["drinking_1.jpg"]["bb"].update(agent=[-5, 0, 10, 20]), "outside"),
    (lambda d: d["drinking_1.jpg"]["bb"].update(agent=[0, 0, 10]), "a box must be 4 numbers"),
    (lambda d: d["drinking_1.jpg"]["bb"].pop("agent"), r"'bb' lacks roles \['agent'\]"),
    (lambda d: d["drinking_1.jpg"].pop("width"), "no positive 'width'"),
    (lambda d: d["drinking_1.jpg"].update(frames=[]), "'frames' must be a non-empty list"),
    (lambda d: d["drinking_1.jpg"]["frames"][0].update(agent=None), "noun must be a string"),
    (lambda d: d.update({"x.jpg": ["drinking"]}), "image 'x.jpg': expected an object"),
])
def test_bad_situations_name_file_and_image(tmp_path, mutate, msg):
    d = _bad(SWIG_SAMPLE)
    mutate(d)
    p = write(tmp_path, "train.json", d)
    space = load_frame_space(write(tmp_path, "space.json", SPACE_SAMPLE))
    with pytest.raises(DataError, match=msg) as ei:
        load_situations(p, space)
    assert str(p) in str(ei.value)


def test_without_space_frames_must_agree(tmp_path):
    d = _bad(SWIG_SAMPLE)
    d["drinking_1.jpg"]["frames"][1] = {"agent": "n1"}
    with pytest.raises(DataError, match="frame 1 has roles"):
        load_situations(write(tmp_path, "t.json", d))
    d = _bad(SWIG_SAMPLE)
    d["drinking_1.jpg"]["bb"]["tool"] = [-1, -1, -1, -1]
    with pytest.raises(DataError, match=r"'bb' has roles \['tool'\]"):
        load_situations(write(tmp_path, "t.json", d))


def test_box_slack(tmp_path):
    d = _bad(SWIG_SAMPLE)
    d["drinking_1.jpg"]["bb"]["container"] = [10, 10, 300.5, 400]  # half a pixel out: within the default slack
    p = write(tmp_path, "t.json", d)
    assert load_situations(p)["drinking_1.jpg"].boxes["container"] == (10.0, 10.0, 300.5, 400.0)
    with pytest.raises(DataError, match="outside"):
        load_situations(p, box_slack=0.0)


@pytest.mark.parametrize("text, msg", [
    ('{"a.jpg": {"verb": "drinking", "frames": [', "truncated JSON"),
    ('{"a.jpg": {"verb": "drinking" "frames": []}}', "malformed JSON at line 1"),
    ("", "empty file"),
    ('{"a.jpg": {"verb": "x", "frames": [{"r": ""}]}, "a.jpg": {"verb": "x", "frames": [{"r": ""}]}}',
     "duplicated key 'a.jpg'"),
    ('["a.jpg"]', "expected an object image -> annotation"),
])
def test_bad_json_files(tmp_path, text, msg):
    p = write(tmp_path, "t.json", text)
    with pytest.raises(DataError, match=msg) as ei:
        load_situations(p)
    assert str(p) in str(ei.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_json(tmp_path / "nope.json")


def test_situation_without_space_keeps_frame_role_order(tmp_path):
    sp = FrameSpace(verbs={"v": VerbDef("v", "", "", ("b", "a"))}, nouns={"n": NounDef("n", ())})
    p = write(tmp_path, "t.json", {"i.jpg": {"verb": "v", "frames": [{"a": "n", "b": ""}]}})
    assert list(load_situations(p, sp)["i.jpg"].frames[0]) == ["a", "b"]


# ------------------------------------------------------------------------- downloader (dry run only)


def test_download_dry_run_prints_urls_and_fetches_nothing(tmp_path, capsys):
    from mipd_kit.data.download import SOURCES, main as dl_main, plan

    for ds in ("swig", "hico", "vcoco"):
        assert dl_main(["download", ds, "--to", str(tmp_path / ds), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "https://swig-data-weights.s3.us-east-2.amazonaws.com/images_512.zip" in out
    assert "allenai/swig/70f2cb63aae3f4309bcb520eea1e14805e8c6c42/SWiG_jsons/imsitu_space.json" in out
    assert "fredzzhang/hicodet/e4e234045e0a4128995a2e45e841b3ebe64eda0b/instances_test2015.json" in out
    assert "/HEAD/" not in out  # pinned commits, never a moving branch
    assert "gdrive:1QZcJmGVlF9f4h-XLWe9Gkmnmj2z1gSnk" in out
    assert "http://images.cocodataset.org/zips/train2014.zip" in out
    assert not any(tmp_path.iterdir())  # nothing written
    assert all(s.url.startswith(("https://", "http://", "gdrive:")) for v in SOURCES.values() for s in v)
    assert [s.dest for s in plan("swig", images=False, only="*.json")] == [
        "SWiG_jsons/train.json", "SWiG_jsons/dev.json", "SWiG_jsons/test.json", "SWiG_jsons/imsitu_space.json"]
    with pytest.raises(ValueError, match="unknown dataset"):
        plan("coco")
    assert dl_main(["download", "swig", "--to", str(tmp_path), "--only", "nothing*", "--dry-run"]) == 2


def test_download_fetch_resumes_over_loopback_http(tmp_path, capsys):
    """A real HTTP server on 127.0.0.1 serving with Range support: a half-downloaded .part file is resumed."""
    import hashlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mipd_kit.data.download import Source, fetch

    payload = bytes(range(256)) * 4000  # ~1 MB
    ranges = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.split("=")[1].rstrip("-"))
                ranges.append(start)
                self.send_response(206)
            else:
                self.send_response(200)
            body = payload[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        src = Source(f"http://127.0.0.1:{srv.server_port}/f.bin", "sub/f.bin")
        part = tmp_path / "sub" / "f.bin.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(payload[:300_000])
        import urllib.request

        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever the env says
        out = fetch(src, tmp_path, opener=no_proxy)
        assert out.read_bytes() == payload and not part.exists()
        assert ranges == [300_000]
        digest = hashlib.sha256(payload).hexdigest()
        assert (tmp_path / "SHA256SUMS").read_text() == f"{digest}  sub/f.bin\n"
        assert fetch(src, tmp_path, opener=no_proxy) == out  # second call: exists, skipped
        assert "exists" in capsys.readouterr().out
    finally:
        srv.shutdown()
        srv.server_close()
