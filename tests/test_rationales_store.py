"""The rationale store: keys, torn-line repair after a kill, concurrent writers, collect, authors' JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mipd_kit.data.records import DataError
from mipd_kit.rationales.store import (AUTHOR_FIELDS, Rationale, RationaleStore, collect, export_authors_json,
                                       from_authors_json, import_authors_json, read_rationales, to_authors_json)

ROOT = Path(__file__).resolve().parents[1]


def rec(image="a.png", kind="glimpse", role=None, polarity="positive", text="t", rnd=0, score=8.0, backend="b",
        source="generated", target=None, index=0):
    return Rationale(image=image, kind=kind, role=role, polarity=polarity, text=text, round=rnd, score=score,
                     backend=backend, verdict={"score": score, "accept": polarity == "positive", "reasons": []},
                     source=source, target=target, index=index)


def test_append_skips_existing_keys_and_reads_back(tmp_path):
    s = RationaleStore(tmp_path / "r.jsonl")
    assert s.append(rec()) is True
    assert s.append(rec(text="other text, same key")) is False
    assert s.append(rec(rnd=1)) and s.append(rec(kind="gaze", role="agent")) and s.append(rec(backend="c"))
    assert len(s) == 4 and rec().key() in s
    back = read_rationales(tmp_path / "r.jsonl")
    assert [r.text for r in back] == ["t"] * 4
    assert all(json.loads(line)["schema"] == 1 for line in (tmp_path / "r.jsonl").read_text().splitlines())
    s2 = RationaleStore(tmp_path / "r.jsonl")  # a new opener sees the old keys
    assert s2.append(rec()) is False and len(s2.records(backend="b")) == 3


def test_torn_last_line_is_truncated_on_open(tmp_path):
    p = tmp_path / "r.jsonl"
    s = RationaleStore(p)
    s.append(rec())
    s.append(rec(rnd=1))
    s.close()
    whole = p.read_bytes()
    p.write_bytes(whole + b'{"image": "a.png", "kind": "glim')  # killed mid-write
    assert len(read_rationales(p)) == 2  # readers ignore the torn tail
    s = RationaleStore(p)
    assert s.repaired_bytes > 0 and p.read_bytes() == whole
    assert s.append(rec(rnd=2)) and len(read_rationales(p)) == 3
    assert p.read_text().endswith("\n")


def test_corrupt_middle_line_and_bad_records_name_the_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(rec().to_json()) + "\nnot json\n" + json.dumps(rec(rnd=1).to_json()) + "\n")
    with pytest.raises(DataError, match=r"r.jsonl: line 2"):
        read_rationales(p)
    with pytest.raises(DataError, match=r"line 2"):
        RationaleStore(p)
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({**rec().to_json(), "polarity": "maybe"}) + "\n")
    with pytest.raises(DataError, match="q.jsonl: line 1: polarity"):
        read_rationales(q)
    q.write_text(json.dumps({**rec().to_json(), "schema": 99}) + "\n")
    with pytest.raises(DataError, match="schema 99"):
        read_rationales(q)
    with pytest.raises(DataError, match="no rationale store"):
        read_rationales(tmp_path / "missing.jsonl")


WRITER = """
import os, sys, time
from mipd_kit.rationales.store import Rationale, RationaleStore
s = RationaleStore(sys.argv[1])
w = int(sys.argv[2])
open(sys.argv[3] + f".ready{w}", "w").close()
while not os.path.exists(sys.argv[3]):  # start barrier: all writers begin together
    time.sleep(0.005)
for i in range(200):
    # half of the keys are shared by all writers (must be written once), half are this writer's own
    image = f"shared_{i}.png" if i % 2 == 0 else f"w{w}_{i}.png"
    s.append(Rationale(image=image, kind="gaze", role="agent", polarity="negative", text="x" * (50 + 300 * (i % 3)) + f" by {w}",
                       round=0, score=1.0, backend="b"))
"""


def test_concurrent_writer_processes_never_interleave_or_duplicate(tmp_path):
    p = tmp_path / "r.jsonl"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(p), str(w), str(go)], cwd=ROOT) for w in range(4)]
    for _ in range(6000):
        if all((tmp_path / f"go.ready{w}").exists() for w in range(4)) or any(pr.poll() for pr in procs):
            break
        time.sleep(0.01)
    go.touch()
    assert [pr.wait(timeout=120) for pr in procs] == [0, 0, 0, 0]
    lines = p.read_text().splitlines()
    recs = [json.loads(line) for line in lines]  # every line is whole JSON
    keys = [(r["image"], r["role"]) for r in recs]
    assert len(keys) == len(set(keys))
    assert len(recs) == 100 + 4 * 100  # 100 shared keys once + 100 own keys per writer


def test_concurrent_threads_in_one_store(tmp_path):
    s = RationaleStore(tmp_path / "r.jsonl")

    def work(t):
        for i in range(40):
            s.append(rec(image=f"{i % 20}.png", text=f"thread {t}"))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(read_rationales(tmp_path / "r.jsonl")) == 20 == len((tmp_path / "r.jsonl").read_text().splitlines())


def test_collect_groups_and_orders():
    rs = [rec(text="pos low", score=7), rec(text="pos high", score=9, rnd=1), rec(text="neg", polarity="negative", score=2, rnd=2),
          rec(kind="gaze", role="agent", text="g+"), rec(kind="gaze", role="agent", text="g-", polarity="negative", score=1, rnd=1),
          rec(kind="gaze", role=None, text="imported attr", source="imported")]
    c = collect(rs)
    assert c["a.png"]["glimpse"] == {"positive": ["pos high", "pos low"], "negative": ["neg"]}
    assert c["a.png"]["gaze"]["agent"] == {"positive": ["g+"], "negative": ["g-"]}
    assert c["a.png"]["gaze"]["*"]["positive"] == ["imported attr"]


def test_authors_json_export_import_roundtrip(tmp_path):
    rs = [rec(text="A man rides a horse.", score=9), rec(text="A man feeds a horse.", polarity="negative", score=1,
                                                      source="hard_negative", target="feeding"),
          rec(text="weak neg", polarity="negative", score=4, rnd=1),
          rec(kind="gaze", role="vehicle", text="The horse is ridden."), rec(kind="gaze", role="agent", text="The man rides."),
          rec(kind="gaze", role="agent", text="A dog.", polarity="negative", score=2)]
    data = to_authors_json(rs, role_order={"a.png": ["agent", "vehicle"]})
    assert data == {"a.png": {"pos_verb_caption": "A man rides a horse.", "neg_verb_caption": "A man feeds a horse.",
                              "pos_attr_caption": "The man rides. The horse is ridden.", "neg_attr_caption": "A dog."}}
    out = tmp_path / "authors.json"
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"a.png": {"verb": "riding", "frames": []}, "b.png": {"verb": "x", "frames": []}}))
    merged = export_authors_json(rs, out, merge_into=train)
    assert merged["a.png"]["verb"] == "riding" and merged["b.png"]["pos_verb_caption"] == ""
    store = RationaleStore(tmp_path / "r.jsonl")
    n = import_authors_json(out, store)
    assert n == 4  # b.png has only empty strings
    assert import_authors_json(out, store) == 0  # idempotent
    again = to_authors_json(store.records())
    assert again["a.png"] == data["a.png"]
    assert {r.source for r in store.records()} == {"imported"}


def test_authors_json_accepts_lists_and_rejects_bad_types():
    rs = from_authors_json({"x.jpg": {f: ["one", "two"] for f in AUTHOR_FIELDS}}, backend="imp")
    assert len(rs) == 8 and len({r.key() for r in rs}) == 8
    with pytest.raises(DataError, match="'x.jpg' field 'pos_verb_caption'"):
        from_authors_json({"x.jpg": {"pos_verb_caption": 3}}, backend="imp", source_name="f.json")
    with pytest.raises(DataError, match="not an object"):
        from_authors_json({"x.jpg": "text"}, backend="imp")


def test_collect_does_not_depend_on_the_order_of_the_records():
    """Records of equal score, round and index (a generated and a hard negative of one round) come out in the same
    order whatever order the file holds them in (jobs append their records as they complete)."""
    import random
    rs = [rec(text=f"neg {k}", polarity="negative", score=2, rnd=0) for k in "dcab"] + \
         [rec(text=f"pos {k}", score=9) for k in "zyx"] + [rec(kind="gaze", role="agent", text=f"g {k}") for k in "qp"]
    want = collect(rs)
    assert want["a.png"]["glimpse"]["negative"] == ["neg a", "neg b", "neg c", "neg d"]
    for seed in range(5):
        shuffled = list(rs)
        random.Random(seed).shuffle(shuffled)
        assert collect(shuffled) == want
