"""HICO-DET / V-COCO readers, writer, vocabularies and zero-shot splits: real files (skip when absent) and bad input."""

from __future__ import annotations

import json

import pytest

from conftest import shared_file
from mipd_kit.data.hico import (coco_to_hico_objects, describe_zero_shot, detect_hoi_format, load_hico_instances,
                                load_hico_qpic, load_hoi_gt, load_vcoco, load_zero_shot_splits, rare_split,
                                resolve_zero_shot, write_hico_instances)
from mipd_kit.data.records import DataError, HOIImage, HOIVocab

HICO = "fredzzhang__hicodet/instances_test2015.json"
QPIC = "ankesh86__InteractDiffusionSmallData/test_hico.json"
GENVLKT = "YueLiao__gen-vlkt/datasets/text_labels_and_zero_shot_splits.json"
HOICLIP = "Artanic30__HOICLIP/datasets/hico_unseen_index.json"
VCOCO = "fredzzhang__vcoco/instances_vcoco_test.json"


@pytest.fixture(scope="module")
def hico():
    return load_hico_instances(shared_file(HICO))


# ----------------------------------------------------------------------------------------------- real files

def test_instances_real_file_counts_and_round_trip(hico, tmp_path):
    images, vocab = hico
    raw = json.loads(shared_file(HICO).read_text())
    assert len(images) == 9658 and vocab.num_hoi == 600
    assert len(vocab.objects) == 80 and len(vocab.verbs) == 117
    assert len(vocab.rare) == 138 and len(vocab.non_rare) == 462
    assert sum(1 for im in images if not im.hoi) == len(raw["empty"]) == 112
    assert sum(len(im.hoi) for im in images) == sum(len(a["hoi"]) for a in raw["annotation"])
    out = tmp_path / "copy.json"
    write_hico_instances(out, images, vocab, extra={"note": "round trip"})
    images2, vocab2 = load_hico_instances(out)
    assert images2 == images and vocab2 == vocab
    again = json.loads(out.read_text())
    assert again["empty"] == raw["empty"] and again["note"] == "round trip"
    for k in ("annotation", "filenames", "size", "objects", "verbs", "correspondence", "rare", "non_rare"):
        assert again[k] == raw[k], k
    assert not (tmp_path / "copy.json.tmp").exists()


def test_qpic_reader_matches_instance_format(hico):
    images, vocab = hico
    qpic = load_hico_qpic(shared_file(QPIC), vocab)
    assert len(qpic) == 100
    by_name = {im.filename: im for im in images}
    for im in qpic:
        gt = by_name[im.filename]
        assert sorted(zip(im.hoi, im.object, im.verb, im.boxes_h, im.boxes_o)) == \
            sorted(zip(gt.hoi, gt.object, gt.verb, gt.boxes_h, gt.boxes_o)), im.filename
    assert detect_hoi_format(shared_file(QPIC)) == "qpic"
    assert detect_hoi_format(shared_file(HICO)) == "instances"
    imgs2, _ = load_hoi_gt(shared_file(QPIC), vocab_path=shared_file(HICO))
    assert [im.width for im in imgs2] == [by_name[im.filename].width for im in imgs2]   # sizes from the vocab file


def test_coco_mappings_equal_the_published_tables(hico):
    _, vocab = hico
    for space, rel in (("coco91", "fredzzhang__hicodet/coco91tohico80.json"),
                       ("coco80", "fredzzhang__hicodet/coco80tohico80.json")):
        table = {int(k): v for k, v in json.loads(shared_file(rel).read_text()).items()}
        assert coco_to_hico_objects(vocab, space) == table
    # the explicit table gives the same records as the built-in name mapping
    a = load_hico_qpic(shared_file(QPIC), vocab)
    b = load_hico_qpic(shared_file(QPIC), vocab, category_map=shared_file("fredzzhang__hicodet/coco91tohico80.json"))
    assert a == b


def test_zero_shot_split_sizes(hico):
    _, vocab = hico
    splits = load_zero_shot_splits(shared_file(GENVLKT), shared_file(HOICLIP))
    rf = describe_zero_shot("rare_first", splits["rare_first"], vocab)
    assert (rf.num_unseen, rf.num_rare) == (120, 120)
    nf = describe_zero_shot("non_rare_first", splits["non_rare_first"], vocab)
    assert (nf.num_unseen, nf.num_non_rare) == (120, 120)
    uo = describe_zero_shot("unseen_object", splits["unseen_object"], vocab)
    assert uo.num_unseen == 100 and len(uo.unseen_objects) == 12
    # every unseen HOI belongs to one of the 12 unseen objects
    objs = set(uo.unseen_objects)
    assert all(vocab.correspondence[h][1] in objs for h in splits["unseen_object"])
    uv = describe_zero_shot("unseen_verb", splits["unseen_verb"], vocab)
    assert uv.num_unseen == 84 and len(uv.unseen_verbs) == 20
    verbs = set(uv.unseen_verbs)
    assert all(vocab.correspondence[h][2] in verbs for h in splits["unseen_verb"])
    for k in range(5):
        assert len(splits[f"uc{k}"]) == 120
    # both files agree on the four shared splits (merging would raise otherwise) and "default" (empty) is dropped
    assert "default" not in splits
    name, idx = resolve_zero_shot("RF-UC", [shared_file(GENVLKT)])
    assert name == "rare_first" and idx == splits["rare_first"]
    name, idx = resolve_zero_shot(f"{shared_file(HOICLIP)}:uc3")
    assert name == "uc3" and idx == splits["uc3"]


def test_vcoco_reader_real_file():
    v = load_vcoco(shared_file(VCOCO))
    raw = json.loads(shared_file(VCOCO).read_text())
    assert len(v.images) == len(raw["annotations"]) == 4946
    assert len(v.classes) == 24 and v.objects[0] == "background"
    assert v.action_role(4) == ("hit", "instr")
    assert sum(len(im.hoi) for im in v.images) == sum(len(a["actions"]) for a in raw["annotations"])


# ----------------------------------------------------------------------------------------------- tiny fixtures

def tiny_vocab() -> HOIVocab:
    return HOIVocab(["ball", "cup"], ["hold", "kick"], [(0, 0, 0), (1, 0, 1), (2, 1, 0)], rare=[1], non_rare=[0, 2])


def tiny_images() -> list[HOIImage]:
    return [HOIImage("a.png", 100, 80, [(1, 1, 10, 20)], [(20, 20, 30, 30)], [0], [0], [0]),
            HOIImage("b.png", 64, 64, [], [], [], [], [])]


def write_raw(path, mutate=None):
    write_hico_instances(path, tiny_images(), tiny_vocab())
    d = json.loads(path.read_text())
    if mutate:
        mutate(d)
    path.write_text(json.dumps(d))
    return path


def test_tiny_round_trip_and_rare_split(tmp_path):
    p = write_raw(tmp_path / "gt.json")
    images, vocab = load_hico_instances(p)
    assert images == tiny_images() and vocab == tiny_vocab()
    rare, non_rare = rare_split(images * 10, 3, threshold=10)
    assert rare == [1, 2] and non_rare == [0]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.pop("correspondence"), "missing key 'correspondence'"),
    (lambda d: d["annotation"][0].pop("verb"), "missing key 'verb'"),
    (lambda d: d["annotation"][0]["boxes_h"].__setitem__(0, [10, 1, 5, 20]), "x2 < x1"),
    (lambda d: d["annotation"][0]["boxes_o"].__setitem__(0, [20, 20, 130, 30]), "outside the image"),
    (lambda d: d["annotation"][0]["hoi"].append(0), "different lengths"),
    (lambda d: d["filenames"].__setitem__(1, "a.png"), "duplicated file name"),
    (lambda d: d["size"].pop(), "same length"),
    (lambda d: d["annotation"][0].__setitem__("hoi", [2]), "does not match"),
    (lambda d: d["correspondence"].__setitem__(2, [2, 0, 0]), "twice"),
])
def test_instance_reader_bad_input(tmp_path, mutate, needle):
    p = write_raw(tmp_path / "gt.json", mutate)
    with pytest.raises(DataError) as e:
        load_hico_instances(p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_truncated_json_names_file(tmp_path):
    p = write_raw(tmp_path / "gt.json")
    p.write_text(p.read_text()[:-40])
    with pytest.raises(DataError, match="not valid JSON"):
        load_hico_instances(p)
    with pytest.raises(DataError, match="gt.json"):
        detect_hoi_format(p)


def test_bad_record_message_names_the_image(tmp_path):
    p = write_raw(tmp_path / "gt.json", lambda d: d["annotation"][1]["boxes_h"].append([1, 2, 3]))
    with pytest.raises(DataError, match=r"image 1 \('b.png'\)"):
        load_hico_instances(p)


def _qpic(path, recs):
    path.write_text(json.dumps(recs))
    return path


def test_qpic_bad_input(tmp_path):
    vocab = HOIVocab(["sports_ball", "person"], ["hold", "kick"], [(0, 0, 0), (1, 0, 1), (2, 1, 0)], [1], [0, 2])
    good = {"file_name": "x.jpg", "annotations": [{"bbox": [1, 1, 5, 5], "category_id": 1},
                                                  {"bbox": [2, 2, 9, 9], "category_id": 37}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 2}]}
    ims = load_hico_qpic(_qpic(tmp_path / "q.json", [good]), vocab)
    assert ims[0].hoi == [1] and ims[0].object == [0] and ims[0].verb == [1]
    with pytest.raises(DataError, match="duplicated file name"):
        load_hico_qpic(_qpic(tmp_path / "q.json", [good, good]), vocab)
    bad = json.loads(json.dumps(good))
    bad["annotations"][1]["category_id"] = 12          # not a COCO id
    with pytest.raises(DataError, match="unknown COCO category id 12"):
        load_hico_qpic(_qpic(tmp_path / "q.json", [bad]), vocab)
    bad = json.loads(json.dumps(good))
    bad["hoi_annotation"][0]["object_id"] = 7
    with pytest.raises(DataError, match=r"record 0 \('x.jpg'\).*points at box"):
        load_hico_qpic(_qpic(tmp_path / "q.json", [bad]), vocab)
    bad = json.loads(json.dumps(good))
    bad["hoi_annotation"][0]["hoi_category_id"] = 1
    with pytest.raises(DataError, match="disagrees"):
        load_hico_qpic(_qpic(tmp_path / "q.json", [bad]), vocab)
    bad = json.loads(json.dumps(good))
    del bad["hoi_annotation"]
    with pytest.raises(DataError, match="missing key 'hoi_annotation'"):
        load_hico_qpic(_qpic(tmp_path / "q.json", [bad]), vocab)
    with pytest.raises(DataError, match="no vocabulary"):
        load_hoi_gt(_qpic(tmp_path / "q.json", [good]))


def test_zero_shot_bad_input(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"s": [1, 2, 2]}))
    with pytest.raises(DataError, match="twice"):
        load_zero_shot_splits(a)
    a.write_text(json.dumps({"s": [1, 2]}))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"hico_unseen_index": {"s": [1, 3]}}))
    with pytest.raises(DataError, match="differs"):
        load_zero_shot_splits(a, b)
    with pytest.raises(DataError, match="not found"):
        resolve_zero_shot("unseen_verb", [a])
    with pytest.raises(DataError, match="no zero-shot split 'x'"):
        resolve_zero_shot(f"{a}:x")


def test_vcoco_bad_input(tmp_path):
    d = {"annotations": [{"boxes_h": [[1, 1, 5, 5]], "boxes_o": [[2, 2, 6, 6]], "actions": [0], "objects": [3],
                          "file_name": "c.jpg"}], "classes": ["hold obj"], "objects": ["background", "a", "b", "c"],
         "images": [7]}
    p = tmp_path / "v.json"
    p.write_text(json.dumps(d))
    assert load_vcoco(p).images[0].hoi == [0]
    d["annotations"][0]["actions"] = [5]
    p.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"annotation 0 \('c.jpg'\): action index"):
        load_vcoco(p)
    d["annotations"][0]["actions"] = [0, 0]
    p.write_text(json.dumps(d))
    with pytest.raises(DataError, match="different lengths"):
        load_vcoco(p)


def test_writer_refuses_bad_records(tmp_path):
    bad = tiny_images()
    bad[0].boxes_h[0] = (50, 1, 10, 20)
    with pytest.raises(DataError, match=r"image 0 \('a.png'\): pair 0 boxes_h.*x2 < x1"):
        write_hico_instances(tmp_path / "w.json", bad, tiny_vocab())
    bad = tiny_images()
    bad[0].hoi[0] = 2
    with pytest.raises(DataError, match="does not match"):
        write_hico_instances(tmp_path / "w.json", bad, tiny_vocab())
    with pytest.raises(ValueError, match="collide"):
        write_hico_instances(tmp_path / "w.json", tiny_images(), tiny_vocab(), extra={"rare": []})
    assert not (tmp_path / "w.json").exists()


def test_bundled_zero_shot_splits_equal_the_published_files(hico):
    """The package ships the standard splits (no extra file needed); they must equal the published lists."""
    from mipd_kit.data.hico import BUNDLED_ZERO_SHOT

    _, vocab = hico
    bundled = load_zero_shot_splits(BUNDLED_ZERO_SHOT)
    published = load_zero_shot_splits(shared_file(GENVLKT), shared_file(HOICLIP))
    assert bundled == published
    assert sorted(bundled) == ["non_rare_first", "rare_first", "uc0", "uc1", "uc2", "uc3", "uc4", "unseen_object",
                               "unseen_verb"]
    assert all(0 <= h < vocab.num_hoi for idx in bundled.values() for h in idx)
    assert (BUNDLED_ZERO_SHOT.parent / "PROVENANCE.md").is_file()


def test_bundled_zero_shot_names_resolve_without_any_split_file(tmp_path):
    from mipd_kit.eval.hico import default_split_files

    search = default_split_files(tmp_path / "instances_test2015.json")  # an empty folder beside the ground truth
    for spec, name, n in (("rare_first", "rare_first", 120), ("NF-UC", "non_rare_first", 120),
                          ("uo", "unseen_object", 100), ("unseen_verb", "unseen_verb", 84), ("uc2", "uc2", 120)):
        got, idx = resolve_zero_shot(spec, search)
        assert got == name and len(idx) == n
    with pytest.raises(DataError, match="not found"):
        resolve_zero_shot("rare_second", search)
