"""The ipywidgets inspector driven through its accessors (no browser), on the generated demo world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mipd_kit.viz.cases import build_cases, load_situations, load_split
from mipd_kit.viz.draw import PALETTE
from mipd_kit.viz.inspector import PANEL_SIZE, Inspector, open_inspector, render_case, write_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    return write_demo(tmp_path_factory.mktemp("demo"), seed=0)


def test_demo_is_valid_swig(demo) -> None:
    world, run = demo
    gt = load_situations(world / "test.json")
    assert len(gt) == 28 and all((world / "images" / k).is_file() for k in gt)
    split = load_split(world / "ov_split.json")
    assert split.of("lifting") == "unseen" and split.extra["unseen_novel"] == ["lifting"]
    assert (run / "predictions" / "mipd-seed0.json").is_file() and (run / "rationales.jsonl").is_file()


def test_filters_accessors_and_navigation(demo) -> None:
    world, run = demo
    ins = open_inspector(run, world, model="mipd", split="unseen")
    vis = ins.visible_cases()
    assert vis and all("unseen" in c.split_tags for c in vis)
    assert ins.current_case() is vis[0] and ins.w_split.value == "unseen"
    label0 = ins.label_text()
    assert f"case 1/{len(vis)}" in label0 and vis[0].image in label0
    img = ins.rendered_image()
    assert img.width >= 2 * PANEL_SIZE and img.height >= PANEL_SIZE  # 128 px images drawn x3
    assert ins.w_image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert ins.next() is vis[1] and ins.index == 1 and ins.w_slider.value == 1
    assert ins.label_text() != label0
    assert ins.prev() is vis[0] and ins.prev() is vis[0]  # clamped
    ins.select(10_000)
    assert ins.current_case() is vis[-1]
    # sorted by confidence, highest first
    assert [c.confidence for c in vis] == sorted((c.confidence for c in vis), reverse=True)
    by_loss = ins.set_filter(split="unseen", sort_by="loss")
    assert [c.loss for c in by_loss] == sorted((c.loss for c in by_loss), reverse=True)
    assert ins.w_sort.value == "loss"


def test_dropdowns_drive_the_filter_like_a_user(demo) -> None:
    world, run = demo
    ins = open_inspector(run, world, model="mipd")
    seen_changes = []
    ins.on_change(lambda i: seen_changes.append(i.current_case()))
    ins.w_error.value = "verb_wrong"  # what a click in the dropdown does
    assert ins.filter["error"] == "verb_wrong"
    assert ins.visible_cases() and all("verb_wrong" in c.errors for c in ins.visible_cases())
    ins.w_split.value = "rare"
    assert all("rare" in c.split_tags and "verb_wrong" in c.errors for c in ins.visible_cases())
    ins.w_split.value = "all"
    ins.w_error.value = "all"
    verb = ins.w_verb.options[1]
    ins.w_verb.value = verb
    assert {c.gt_verb for c in ins.visible_cases()} == {verb}
    if len(ins.visible_cases()) > 1:
        ins.w_slider.value = 1
        assert ins.current_case() is ins.visible_cases()[1]
    ins.w_next.click()
    assert seen_changes and seen_changes[-1] is ins.current_case()


def test_details_show_top5_and_rationales(demo) -> None:
    world, run = demo
    ins = open_inspector(run, world, model="baseline", split="seen")
    c = ins.current_case()
    html = ins.details_html()
    assert c.top5 and all(v in html for v, _ in c.top5)
    assert f"{c.top5[0][1]:.3f}" in html
    assert c.rationales is not None
    assert all(t in html for t in c.rationales["glimpse"]["positive"])
    assert all(t in html for t in c.rationales["glimpse"]["negative"])


def test_rendered_image_has_role_boxes(demo) -> None:
    world, run = demo
    ins = open_inspector(run, world, model="mipd", error="correct")
    c = ins.current_case()
    assert c is not None and c.error == "correct"
    img = ins.rendered_image().convert("RGB")
    colours = {img.getpixel((x, y)) for x in range(img.width) for y in range(img.height)}
    # the two boxed roles (agent, object) are drawn in their palette colours
    assert PALETTE[0] in colours and PALETTE[1] in colours
    # right panel (gt) also has them
    right = img.crop((img.width // 2 + 4, 0, img.width, img.height))
    assert PALETTE[0] in {right.getpixel((x, y)) for x in range(right.width) for y in range(right.height)}


def test_empty_filter_and_missing_images(demo, tmp_path) -> None:
    world, run = demo
    gt = load_situations(world / "test.json")
    cases = build_cases(gt, json.loads((run / "predictions" / "mipd-seed0.json").read_text()),
                        load_split(world / "ov_split.json"))
    ins = Inspector(cases, image_root=tmp_path / "no-images")
    assert ins.current_case() is not None and ins.rendered_image() is not None
    assert ins.current_case().image in ins.missing_images and "placeholder" in ins.label_text()
    ins.set_filter(split="unseen", verb="riding")  # riding is seen: nothing matches
    assert ins.visible_cases() == [] and ins.current_case() is None and ins.rendered_image() is None
    assert "no case" in ins.label_text() and ins.next() is None
    im = render_case(cases[0], None)
    assert im.width >= 2 * PANEL_SIZE  # a placeholder of the annotated size, scaled to the panel


def test_open_inspector_names_missing_inputs(demo, tmp_path) -> None:
    world, run = demo
    with pytest.raises(FileNotFoundError, match=r"icn-seed0\.json is absent \(written by .*05_distillation\)"):
        open_inspector(run, world, model="icn")
    with pytest.raises(FileNotFoundError, match="written by the data stage"):
        open_inspector(run, tmp_path, model="mipd")
