"""The HOI part of a world folder as CL-HOI reads it: training images with their interaction labels stripped at once
(:class:`LabelFreeImage`), the labelled test (or dev) split for the evaluator, the HOI prompts and the zero-shot
split. The labelled training images are read only for the control rows and for measurements
(:func:`labelled_training_images`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from mipd_kit.data.records import DataError, HOIImage, HOIVocab


@dataclass(frozen=True)
class LabelFreeImage:
    """What training may see of an image: its name, size, boxes and object categories; no interaction labels."""

    filename: str
    width: int
    height: int
    boxes_h: tuple
    boxes_o: tuple
    object: tuple


def strip_labels(images: Sequence[HOIImage]) -> list[LabelFreeImage]:
    """Drop ``hoi`` and ``verb`` (never read) from annotated images."""
    return [LabelFreeImage(im.filename, im.width, im.height, tuple(im.boxes_h), tuple(im.boxes_o), tuple(im.object))
            for im in images]


@dataclass
class HOIWorld:
    """The HOI part of a world folder."""

    root: Path
    train: list[LabelFreeImage]
    test: list[HOIImage]
    vocab: HOIVocab
    prompts: list[str]
    unseen: Optional[list[int]]
    zero_shot_name: Optional[str]

    @property
    def images_dir(self) -> Path:
        return self.root / "images"


def load_prompts(path: Path, vocab: HOIVocab) -> list[str]:
    """``hoi_prompts.json``: a list of phrases in HOI order (or ``{hoi index: phrase}``), one per HOI."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: HOI prompts file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if isinstance(data, dict):
        try:
            data = [data[str(k)] if str(k) in data else data[k] for k in range(vocab.num_hoi)]
        except KeyError as e:
            raise DataError(f"{path}: no phrase for HOI {e}") from e
    if not isinstance(data, list) or not all(isinstance(t, str) and t.strip() for t in data):
        raise DataError(f"{path}: must be a list of non-empty phrases")
    if len(data) != vocab.num_hoi:
        raise DataError(f"{path}: {len(data)} phrases for {vocab.num_hoi} HOIs")
    return list(data)


def load_hoi_world(world_dir: str | os.PathLike) -> HOIWorld:
    """Read ``hoi_train.json`` (labels stripped at once), ``hoi_test.json``, prompts and the zero-shot split."""
    from mipd_kit.data.hico import load_hico_instances, load_zero_shot_splits

    root = Path(world_dir)
    train, vocab = load_hico_instances(root / "hoi_train.json")
    train_free = strip_labels(train)
    del train
    test, vocab_t = load_hico_instances(root / "hoi_test.json")
    if vocab_t.correspondence != vocab.correspondence:
        raise DataError(f"{root / 'hoi_test.json'}: correspondence differs from hoi_train.json")
    vocab = vocab_t  # rare / non_rare as stored with the test file (both files carry the same lists in SynthSitu)
    prompts = load_prompts(root / "hoi_prompts.json", vocab)
    unseen = name = None
    zs = root / "hoi_zero_shot.json"
    if zs.exists():
        splits = load_zero_shot_splits(zs)
        if splits:
            name = sorted(splits)[0]
            unseen = sorted(int(x) for x in splits[name])
    return HOIWorld(root, train_free, test, vocab, prompts, unseen, name)


def is_dev_image(filename: str, frac: float, seed: int) -> bool:
    """Whether a training image is held out as dev (a seeded sha256 of its file name below ``frac``)."""
    h = int.from_bytes(hashlib.sha256(f"hoi-dev:{seed}:{filename}".encode()).digest()[:8], "big") / 2 ** 64
    return h < frac


def dev_world(world: HOIWorld, frac: float, seed: int) -> HOIWorld:
    """The world with a dev split carved out of ``hoi_train`` (:func:`is_dev_image`): ``train`` = the rest (labels
    stripped), ``test`` = the dev images *with* labels, read from ``hoi_train.json`` for the evaluator only."""
    from mipd_kit.data.hico import load_hico_instances

    labelled, _ = load_hico_instances(world.root / "hoi_train.json")
    dev = [im for im in labelled if is_dev_image(im.filename, frac, seed)]
    names = {im.filename for im in dev}
    train = [im for im in world.train if im.filename not in names]
    if not dev or not train:
        raise DataError(f"{world.root / 'hoi_train.json'}: dev_frac={frac} leaves {len(train)} training and "
                        f"{len(dev)} dev images")
    return replace(world, train=train, test=dev)


def labelled_training_images(world: HOIWorld) -> list[HOIImage]:
    """The training images *with* their interaction labels (``hoi_train.json``), for the control rows and for
    measuring descriptions against the truth only; the label-free rows never call this."""
    from mipd_kit.data.hico import load_hico_instances

    names = {im.filename for im in world.train}
    labelled, _ = load_hico_instances(world.root / "hoi_train.json")
    return [im for im in labelled if im.filename in names]
