"""Open-vocabulary splits: builders (counts, Zellers & Choi on the real csv, lists), JSON round trip,
validation, the training leakage guard and the `mipd split` CLI."""

from __future__ import annotations

import json

import pytest

from mipd_kit.data.records import DataError, Situation
from mipd_kit.data.splits import LeakageError, OvSplit, guard_training, main
from mipd_kit.data.swig import load_situations, write_situations
from tests.conftest import shared_file

ZC = "rowanz__verb-attributes/data/VerbsWithAttributes"


def imsitu_verbs() -> list[str]:
    tab = shared_file("my89__imSitu/evaluation/verb_id.tab")
    return [ln.split("\t")[1] for ln in tab.read_text().splitlines() if ln.strip()]


def sit(image: str, verb: str) -> Situation:
    return Situation(image, verb, 0, 0, {}, ({"agent": "n1"},))


# ------------------------------------------------------------------------------------------- builders


def test_from_counts_threshold_is_inclusive():
    counts = {"a": 10, "b": 11, "c": 0, "d": 3, "u": 5}
    s = OvSplit.from_counts(counts, unseen=["u", "z"], rare_max=10)
    assert s.seen == ["b"] and s.rare == ["a", "c", "d"] and s.unseen == ["u", "z"]
    assert s.counts["seen"] == 1 and s.counts["rare"] == 3 and s.counts["unseen"] == 2
    assert s.counts["train_images_of_unseen"] == 5  # recorded, and the guard will refuse them
    assert "at most 10" in s.rule
    assert s.of("a") == "rare" and s.of("b") == "seen" and s.of("z") == "unseen"


def test_zellers_choi_real_csv_counts(shared_data):
    csv = shared_file(f"{ZC}/attributes_split.csv")
    verbs = imsitu_verbs()
    s = OvSplit.from_zellers_choi(csv, verbs)
    assert (len(s.seen), len(s.rare), len(s.unseen), len(s.extra["val"])) == (379, 0, 96, 29)
    assert s.counts["mapped"] == 504
    assert set(s.seen) | set(s.unseen) | set(s.extra["val"]) == set(verbs)
    assert s.of("adjusting") == "seen"
    u = OvSplit.from_zellers_choi(csv, verbs, val="unseen")
    assert (len(u.seen), len(u.unseen)) == (379, 125) and "val" not in u.extra
    v = OvSplit.from_zellers_choi(csv, verbs, val="seen")
    assert (len(v.seen), len(v.unseen)) == (408, 96)
    counts = {vb: (3 if i % 2 else 50) for i, vb in enumerate(verbs)}
    r = OvSplit.from_zellers_choi(csv, verbs, train_counts=counts, rare_max=5)
    assert len(r.seen) + len(r.rare) == 379 and all(counts[x] <= 5 for x in r.rare) and r.rare


def test_imsitu_verbs_txt_is_in_imsitu_index_order(shared_data):
    """The lemma list maps by position: check it against imSitu's own image -> verb index file."""
    verbs = imsitu_verbs()
    lemmas = shared_file(f"{ZC}/imsitu_verbs.txt").read_text().split()
    assert len(lemmas) == len(verbs) == 504
    pairs = shared_file(f"{ZC}/imsitu_split/dev_set.txt").read_text().splitlines()
    for line in pairs[::500]:
        img, idx = line.split()
        assert img.rsplit("_", 1)[0] == verbs[int(idx)]
    assert all(v.startswith(lem[:2]) or (v, lem) == ("tying", "tie") for v, lem in zip(verbs, lemmas))


def test_zellers_choi_bad_inputs(tmp_path, shared_data):
    csv = shared_file(f"{ZC}/attributes_split.csv")
    with pytest.raises(DataError, match="504 lemmas but 3"):
        OvSplit.from_zellers_choi(csv, ["a", "b", "c"])
    lem = tmp_path / "lemmas.txt"
    lem.write_text("adjust\nzzzz\n")
    with pytest.raises(DataError, match="lemma 'zzzz'"):
        OvSplit.from_zellers_choi(csv, ["adjusting", "zzzzing"], lemmas_path=lem)
    with pytest.raises(DataError, match="lemma 'zzzz' does not fit imSitu verb 'yawning'"):
        OvSplit.from_zellers_choi(csv, ["adjusting", "yawning"], lemmas_path=lem)
    assert OvSplit.from_zellers_choi(csv, list(reversed(imsitu_verbs()))).counts["csv_test"] == 96
    bad = tmp_path / "split.csv"
    bad.write_text("verb,train,test,val,in_imsitu\nadjust,True,True,False,True\nzzzz,True,False,False,True\n")
    with pytest.raises(DataError, match="line 2 .*in 2 splits"):
        OvSplit.from_zellers_choi(bad, ["adjusting", "zzzzing"], lemmas_path=lem)
    with pytest.raises(ValueError, match="val must be"):
        OvSplit.from_zellers_choi(csv, imsitu_verbs(), val="train")  # type: ignore[arg-type]


def test_from_lists_with_extras():
    s = OvSplit.from_lists(["a"], ["b"], ["c", "d"], unseen_compositional=["c"], unseen_novel=["d"])
    assert s.lists() == {"seen": ["a"], "rare": ["b"], "unseen": ["c", "d"],
                         "unseen_compositional": ["c"], "unseen_novel": ["d"]}
    assert s.trainable == {"a", "b"} and s.verbs == ["a", "b", "c", "d"]
    assert s.get("x") is None
    with pytest.raises(KeyError, match="'x' is in no list"):
        s.of("x")


@pytest.mark.parametrize("kwargs, msg", [
    (dict(seen=["a"], rare=["a"], unseen=[]), "'a' is in both 'seen' and 'rare'"),
    (dict(seen=["a", "a"], rare=[], unseen=[]), "listed twice in 'seen'"),
    (dict(seen=[], rare=[], unseen=["c", "d"], extra={"unseen_compositional": ["c"], "unseen_novel": []}),
     "must equal unseen"),
    (dict(seen=[], rare=[], unseen=[], extra={"all": []}), "may not be called 'all'"),
])
def test_invalid_splits(kwargs, msg):
    with pytest.raises(DataError, match=msg):
        OvSplit(**kwargs)


# ---------------------------------------------------------------------------------------------- I/O


def test_save_load_roundtrip(tmp_path):
    s = OvSplit.from_lists(["a"], ["b"], ["c", "d"], rule="mine", unseen_compositional=["c"], unseen_novel=["d"])
    p = tmp_path / "run" / "ov_split.json"
    s.save(p)
    assert not list(p.parent.glob("*.tmp"))
    d = json.loads(p.read_text())
    assert d["seen"] == ["a"] and d["unseen_novel"] == ["d"] and d["rule"] == "mine" and d["counts"]["unseen"] == 2
    back = OvSplit.load(p)
    assert back.lists() == s.lists() and back.rule == "mine" and back.counts == s.counts


def test_load_minimal_and_bad_files(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"seen": ["a"], "rare": [], "unseen": ["b"]}')
    s = OvSplit.load(p)
    assert s.of("b") == "unseen" and s.counts == {"seen": 1, "rare": 0, "unseen": 1}
    for text, msg in [('{"seen": [], "rare": []}', "missing key 'unseen'"),
                      ('{"seen": [1], "rare": [], "unseen": []}', "'seen' must be a list of verb names"),
                      ('{"seen": ["a"], "rare": [], "unseen": ["a"]}', "'a' is in both"),
                      ('{"seen": ["a"], "rare": [', "truncated"),
                      ('[]', "must be a JSON object")]:
        p.write_text(text)
        with pytest.raises(DataError, match=msg) as ei:
            OvSplit.load(p)
        assert str(p) in str(ei.value)


# ------------------------------------------------------------------------------------------ leakage


def test_guard_training_refuses_unseen_examples():
    split = OvSplit.from_lists(["ride"], ["eat"], ["fly"])
    ok = {"1.jpg": sit("1.jpg", "ride"), "2.jpg": sit("2.jpg", "eat")}
    assert guard_training(ok, split) == ok
    leak = {**ok, "3.jpg": sit("3.jpg", "fly")}
    with pytest.raises(LeakageError, match=r"1 images of 1 unseen verbs \(\['fly'\].*3.jpg"):
        guard_training(leak, split)
    other = {**ok, "4.jpg": sit("4.jpg", "swim")}
    with pytest.raises(LeakageError, match="unlisted"):
        guard_training(other, split)
    assert "4.jpg" in guard_training(other, split, allow_unlisted=True)


def test_guard_zellers_choi_on_real_imsitu(shared_data):
    split = OvSplit.from_zellers_choi(shared_file(f"{ZC}/attributes_split.csv"), imsitu_verbs())
    sits = load_situations(shared_file("LUNAProject22__CLIPSitu/imSitu/debug.json"))
    with pytest.raises(LeakageError, match="6 images of"):
        guard_training(sits, split)
    train = {k: s for k, s in sits.items() if split.get(s.verb) in ("seen", "rare")}
    assert len(guard_training(train, split)) == 39  # val verbs (5 images) are unlisted: refused too
    val_only = {k: s for k, s in sits.items() if s.verb in split.extra["val"]}
    with pytest.raises(LeakageError, match="5 images of .* unlisted"):
        guard_training(val_only, split)


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_counts_and_lists(tmp_path, capsys):
    train = tmp_path / "train.json"
    write_situations(train, [sit(f"r{i}.jpg", "ride") for i in range(12)] + [sit("e0.jpg", "eat")])
    unseen = tmp_path / "unseen.txt"
    unseen.write_text("fly\n")
    out = tmp_path / "ov.json"
    assert main(["--from", "counts", "--train", str(train), "--unseen", str(unseen), "--rare-max", "10",
                 "--out", str(out)]) == 0
    s = OvSplit.load(out)
    assert (s.seen, s.rare, s.unseen) == (["ride"], ["eat"], ["fly"])
    seen = tmp_path / "seen.txt"
    seen.write_text("ride\neat\n")
    assert main(["--from", "lists", "--seen", str(seen), "--unseen", str(unseen), "--out", str(out)]) == 0
    assert OvSplit.load(out).seen == ["ride", "eat"]
    assert "seen 2, rare 0, unseen 1" in capsys.readouterr().out


def test_cli_zellers_choi(shared_data, tmp_path, capsys):
    out = tmp_path / "ov.json"
    code = main(["--from", "zellers-choi", "--csv", str(shared_file(f"{ZC}/attributes_split.csv")),
                 "--verbs", str(shared_file("my89__imSitu/evaluation/verb_id.tab")), "--out", str(out)])
    assert code == 0
    s = OvSplit.load(out)
    assert (len(s.seen), len(s.unseen), len(s.extra["val"])) == (379, 96, 29)
    assert "seen 379, rare 0, unseen 96, val 29" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--from", "counts", "--out", str(tmp_path / "o.json")])
    bad = tmp_path / "train.json"
    bad.write_text("{")
    unseen = tmp_path / "u.txt"
    unseen.write_text("x\n")
    assert main(["--from", "counts", "--train", str(bad), "--unseen", str(unseen), "--out", str(tmp_path / "o.json")]) == 1
    assert "train.json" in capsys.readouterr().err
