"""Open-vocabulary verb splits as data (seen / rare / unseen), and the training leakage guard.

Ov-GSR (MIPD) evaluates on verbs that are *seen* in training, *rare* (few training images, still trained on)
and *unseen* (never trained on). The public MIPD code only encodes this split in file names; here it is a
JSON file saved beside every run (``ov_split.json``)::

    {"seen": [verbs], "rare": [verbs], "unseen": [verbs],
     "unseen_compositional": [...], "unseen_novel": [...],      # optional extra lists (SynthSitu)
     "rule": "how the split was made", "counts": {"seen": n, ...}}

The three main lists are disjoint; every other list-valued key is an *extra* breakdown (e.g. SynthSitu's
``unseen_compositional`` / ``unseen_novel``, whose union must be ``unseen``) reported by the evaluation too.

Builders:

* :meth:`OvSplit.from_counts` - rare = verbs with at most ``rare_max`` training images;
* :meth:`OvSplit.from_zellers_choi` - the zero-shot verb split of Zellers & Choi ("Zero-Shot Activity
  Recognition with Verb Attribute Induction", EMNLP 2017): its ``attributes_split.csv`` lists verb lemmas,
  mapped to imSitu verbs through ``imsitu_verbs.txt`` (lemmas in imSitu index order); train -> seen,
  test -> unseen, val -> unseen, seen or left out (then kept as the extra list ``val``). With the public files
  all 504 imSitu verbs map: 379 train, 29 val, 96 test;
* :meth:`OvSplit.from_lists` - explicit lists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping, Optional, Sequence

from mipd_kit.data.records import DataError, Situation
from mipd_kit.fileio import atomic_write_text

MAIN_SPLITS = ("seen", "rare", "unseen")
#: every split name a metric row may carry (``all`` first), in report order
SPLIT_NAMES = ("all", "seen", "rare", "unseen", "unseen_compositional", "unseen_novel", "unseen_dev", "unseen_test",
               "unseen_dev_compositional", "unseen_dev_novel")
SplitName = Literal["seen", "rare", "unseen"]


class LeakageError(RuntimeError):
    """A training set contains an example of a verb the split declares unseen (or does not list)."""


@dataclass
class OvSplit:
    """Seen / rare / unseen verb lists, the rule that made them, counts and extra breakdowns.

    Attributes:
        seen: verbs trained on with many examples.
        rare: verbs trained on with few examples (disjoint from ``seen``).
        unseen: verbs never trained on.
        rule: human-readable rule, e.g. ``"counts: rare = at most 10 training images"``.
        counts: sizes (``seen``, ``rare``, ``unseen``, extras) and builder-specific numbers.
        extra: further named verb lists, e.g. ``unseen_compositional`` / ``unseen_novel``.
    """

    seen: list[str]
    rare: list[str]
    unseen: list[str]
    rule: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.seen, self.rare, self.unseen = list(self.seen), list(self.rare), list(self.unseen)
        self._index: dict[str, str] = {}
        for name in MAIN_SPLITS:
            vs = getattr(self, name)
            if len(set(vs)) != len(vs):
                dup = sorted({v for v in vs if vs.count(v) > 1})
                raise DataError(f"ov split: verbs listed twice in {name!r}: {dup[:5]}")
            for v in vs:
                if v in self._index:
                    raise DataError(f"ov split: verb {v!r} is in both {self._index[v]!r} and {name!r}")
                self._index[v] = name
        for k, vs in self.extra.items():
            if k in MAIN_SPLITS or k in ("rule", "counts", "all"):
                raise DataError(f"ov split: extra list may not be called {k!r}")
            self.extra[k] = list(vs)
        parts = [k for k in ("unseen_compositional", "unseen_novel") if k in self.extra]
        if len(parts) == 2:
            union = set(self.extra["unseen_compositional"]) | set(self.extra["unseen_novel"])
            if union != set(self.unseen):
                raise DataError("ov split: unseen_compositional + unseen_novel must equal unseen "
                                f"({len(union ^ set(self.unseen))} verbs differ)")
        for name in (*MAIN_SPLITS, *self.extra):
            self.counts.setdefault(name, len(self.lists()[name]))

    # ---------------------------------------------------------------------------------------- access
    def of(self, verb: str) -> SplitName:
        """``"seen"``, ``"rare"`` or ``"unseen"``.

        Raises:
            KeyError: the verb is in none of the three lists.
        """
        try:
            return self._index[verb]  # type: ignore[return-value]
        except KeyError:
            raise KeyError(f"verb {verb!r} is in no list of the ov split ({self.rule})") from None

    def get(self, verb: str) -> Optional[str]:
        """Like :meth:`of` but ``None`` for a verb in no list."""
        return self._index.get(verb)

    @property
    def verbs(self) -> list[str]:
        """All verbs of the three main lists."""
        return [*self.seen, *self.rare, *self.unseen]

    @property
    def trainable(self) -> set[str]:
        """Verbs whose examples may be trained on (seen and rare)."""
        return {*self.seen, *self.rare}

    def lists(self) -> dict[str, list[str]]:
        """Every named verb list: seen, rare, unseen, then the extras (the evaluation's breakdowns)."""
        return {"seen": self.seen, "rare": self.rare, "unseen": self.unseen, **self.extra}

    # ------------------------------------------------------------------------------------------- I/O
    def to_json(self) -> dict:
        return {"seen": self.seen, "rare": self.rare, "unseen": self.unseen, **self.extra,
                "rule": self.rule, "counts": dict(self.counts)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the split JSON atomically (:func:`mipd_kit.fileio.atomic_write_text`)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "OvSplit":
        """Read a split file.

        Raises:
            DataError: malformed JSON, a missing list, a non-string verb, overlapping lists.
        """
        from mipd_kit.data.swig import read_json

        p = Path(path)
        d = read_json(p)
        if not isinstance(d, dict):
            raise DataError(f"{p}: an ov split must be a JSON object")
        for k in MAIN_SPLITS:
            if k not in d:
                raise DataError(f"{p}: missing key {k!r}")
        lists: dict[str, list[str]] = {}
        for k, v in d.items():
            if k in ("rule", "counts"):
                continue
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise DataError(f"{p}: {k!r} must be a list of verb names")
            lists[k] = v
        counts = d.get("counts", {})
        if not isinstance(counts, dict):
            raise DataError(f"{p}: 'counts' must be an object")
        try:
            return cls(seen=lists.pop("seen"), rare=lists.pop("rare"), unseen=lists.pop("unseen"),
                       rule=str(d.get("rule", "")), counts=dict(counts), extra=lists)
        except DataError as e:
            raise DataError(f"{p}: {e}") from None

    # -------------------------------------------------------------------------------------- builders
    @classmethod
    def from_counts(cls, train_counts: Mapping[str, int], unseen: Iterable[str], rare_max: int = 10,
                    extra: Optional[Mapping[str, Sequence[str]]] = None) -> "OvSplit":
        """Rare = verbs with at most ``rare_max`` training images; unseen as given; the rest seen.

        Args:
            train_counts: verb -> number of training images (verbs with 0 images may be listed).
            unseen: verbs never trained on (they are unseen whatever their count).
            rare_max: the threshold N (from the config).
            extra: optional extra lists (e.g. ``unseen_compositional``).
        """
        unseen_l = sorted(set(unseen))
        us = set(unseen_l)
        seen, rare = [], []
        for v in sorted(train_counts):
            if v in us:
                continue
            (rare if train_counts[v] <= rare_max else seen).append(v)
        leaked = sum(int(train_counts.get(v, 0)) for v in unseen_l)
        counts = {"rare_max": int(rare_max), "train_images": int(sum(train_counts.values())),
                  "train_images_of_unseen": leaked}
        return cls(seen, rare, unseen_l, rule=f"counts: rare = at most {rare_max} training images; unseen given",
                   counts=counts, extra={k: sorted(v) for k, v in (extra or {}).items()})

    @classmethod
    def from_zellers_choi(cls, csv_path: str | os.PathLike, verbs: Sequence[str],
                          lemmas_path: str | os.PathLike | None = None,
                          val: Literal["exclude", "unseen", "seen"] = "exclude",
                          train_counts: Optional[Mapping[str, int]] = None,
                          rare_max: Optional[int] = None) -> "OvSplit":
        """The Zellers & Choi (EMNLP 2017) zero-shot verb split mapped to imSitu verbs.

        Args:
            csv_path: ``attributes_split.csv`` (columns ``verb,train,test,val,in_imsitu``; verbs are lemmas).
            verbs: the 504 imSitu verbs, e.g. ``"adjusting"`` (any order: imSitu's index order, that of
                ``verb_id.tab`` and of the lemma file, is alphabetical, so they are sorted here).
            lemmas_path: ``imsitu_verbs.txt`` (one lemma per imSitu verb, same order); default: beside the csv.
            val: what to do with the 29 validation verbs: ``"exclude"`` (kept as extra list ``val``, never trained
                on by the guard), ``"unseen"`` or ``"seen"``.
            train_counts, rare_max: when both given, seen verbs with at most ``rare_max`` images become rare.

        Raises:
            DataError: files missing or malformed, lists of different length, a lemma absent from the csv
                or not marked ``in_imsitu``, a row in no split.
        """
        from mipd_kit.data.swig import read_csv_rows, read_index_list

        if val not in ("exclude", "unseen", "seen"):
            raise ValueError(f"val must be one of 'exclude', 'unseen', 'seen', got {val!r}")
        csv_p = Path(csv_path)
        lem_p = Path(lemmas_path) if lemmas_path is not None else csv_p.parent / "imsitu_verbs.txt"
        lemmas = read_index_list(lem_p)
        verbs = sorted(verbs)  # imSitu index order (verb_id.tab) is alphabetical order
        if len(lemmas) != len(verbs):
            raise DataError(f"{lem_p}: {len(lemmas)} lemmas but {len(verbs)} imSitu verbs were given")
        for lemma, verb in zip(lemmas, verbs):
            if lemma[:1] != verb[:1]:
                raise DataError(f"{lem_p}: lemma {lemma!r} does not fit imSitu verb {verb!r} at the same index "
                                "(are these the 504 imSitu verbs?)")
        rows = read_csv_rows(csv_p)
        need = {"verb", "train", "test", "val"}
        if rows and not need <= set(rows[0]):
            raise DataError(f"{csv_p}: needs columns {sorted(need)}, has {sorted(rows[0])}")
        by_lemma = {}
        for i, r in enumerate(rows, 2):
            flags = [k for k in ("train", "val", "test") if r[k].strip().lower() == "true"]
            if len(flags) != 1:
                raise DataError(f"{csv_p}: line {i} ({r['verb']!r}) is in {len(flags)} splits, expected 1")
            by_lemma[r["verb"].strip()] = (flags[0], r.get("in_imsitu", "True").strip().lower() == "true")
        parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for lemma, verb in zip(lemmas, verbs):
            if lemma not in by_lemma:
                raise DataError(f"{csv_p}: imSitu verb {verb!r} (lemma {lemma!r}) is not in the csv")
            part, in_imsitu = by_lemma[lemma]
            if not in_imsitu:
                raise DataError(f"{csv_p}: lemma {lemma!r} of imSitu verb {verb!r} is not marked in_imsitu")
            parts[part].append(verb)
        seen, unseen, extra = list(parts["train"]), list(parts["test"]), {}
        if val == "unseen":
            unseen += parts["val"]
        elif val == "seen":
            seen += parts["val"]
        else:
            extra["val"] = list(parts["val"])
        rare: list[str] = []
        rule = f"zellers-choi: attributes_split.csv train->seen, test->unseen, val->{val}"
        if train_counts is not None and rare_max is not None:
            rare = [v for v in seen if train_counts.get(v, 0) <= rare_max]
            seen = [v for v in seen if v not in set(rare)]
            rule += f"; seen verbs with at most {rare_max} training images -> rare"
        counts = {"csv_train": len(parts["train"]), "csv_val": len(parts["val"]), "csv_test": len(parts["test"]),
                  "mapped": len(verbs)}
        return cls(seen, rare, unseen, rule=rule, counts=counts, extra=extra)

    @classmethod
    def from_lists(cls, seen: Iterable[str], rare: Iterable[str], unseen: Iterable[str],
                   rule: str = "explicit lists", **extra: Sequence[str]) -> "OvSplit":
        """Explicit lists (extra keyword lists become extra breakdowns)."""
        return cls(list(seen), list(rare), list(unseen), rule=rule, counts={},
                   extra={k: list(v) for k, v in extra.items()})


def guard_training(situations: Mapping[str, Situation], split: OvSplit,
                   allow_unlisted: bool = False) -> dict[str, Situation]:
    """Refuse a training set with any example of an unseen verb; returns the situations unchanged.

    Every training data path must call this before building batches.

    Args:
        situations: ``{image: Situation}`` meant for training.
        split: the run's open-vocabulary split.
        allow_unlisted: accept verbs the split does not list at all (default: refuse them too).

    Raises:
        LeakageError: naming the number of offending images, their verbs and a few image names.
    """
    bad: dict[str, list[str]] = {}
    unlisted: dict[str, list[str]] = {}
    for img, s in situations.items():
        kind = split.get(s.verb)
        if kind == "unseen":
            bad.setdefault(s.verb, []).append(img)
        elif kind is None and not allow_unlisted:
            unlisted.setdefault(s.verb, []).append(img)
    for what, d in (("unseen", bad), ("unlisted", unlisted)):
        if d:
            n = sum(len(v) for v in d.values())
            ex = [i for v in d.values() for i in v][:3]
            raise LeakageError(f"training data contains {n} images of {len(d)} {what} verbs "
                               f"({sorted(d)[:5]}...), e.g. {ex}; split rule: {split.rule}")
    return dict(situations)


def load_ov_split(world_dir: str | os.PathLike) -> dict[str, list[str]]:
    """``ov_split.json`` as {split name: verbs} for the names in ``SPLIT_NAMES`` (``all`` excluded)."""
    p = Path(world_dir) / "ov_split.json"
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{p}: file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e})") from e
    out = {}
    for k in SPLIT_NAMES[1:]:
        if k in d:
            out[k] = list(d[k])
    for k in ("seen", "unseen"):
        if k not in out:
            raise DataError(f"{p}: lacks the {k!r} verb list")
    out.setdefault("rare", [])
    return out


# ----------------------------------------------------------------------------------------------- CLI


def _read_verb_list(path: str) -> list[str]:
    from mipd_kit.data.swig import read_index_list

    p = Path(path)
    if p.suffix == ".json":
        from mipd_kit.data.swig import load_frame_space

        return list(load_frame_space(p).verbs)
    if p.suffix == ".tab":
        return [ln.split("\t")[1].strip() for ln in p.read_text().splitlines() if ln.strip()]
    return read_index_list(p)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd split --from counts|zellers-choi|lists ... --out ov_split.json``."""
    ap = argparse.ArgumentParser(prog="mipd split", description="Build an open-vocabulary verb split file.")
    ap.add_argument("--from", dest="source", required=True, choices=["counts", "zellers-choi", "lists"])
    ap.add_argument("--out", required=True, help="output ov_split.json")
    ap.add_argument("--train", help="counts: SWiG/imSitu train.json whose images are counted per verb")
    ap.add_argument("--unseen", help="counts/lists: file with one unseen verb per line")
    ap.add_argument("--rare-max", type=int, default=10, help="rare = at most this many training images")
    ap.add_argument("--csv", help="zellers-choi: attributes_split.csv")
    ap.add_argument("--verbs", help="zellers-choi: the imSitu verbs (verb_id.tab, imsitu_space.json or one per line)")
    ap.add_argument("--lemmas", help="zellers-choi: imsitu_verbs.txt (default: beside the csv)")
    ap.add_argument("--val", default="exclude", choices=["exclude", "unseen", "seen"],
                    help="zellers-choi: where the 29 val verbs go")
    ap.add_argument("--seen", help="lists: file with one seen verb per line")
    ap.add_argument("--rare", help="lists: file with one rare verb per line")
    a = ap.parse_args(list(argv) if argv is not None else None)
    try:
        if a.source == "counts":
            if not a.train or not a.unseen:
                ap.error("--from counts needs --train and --unseen")
            from mipd_kit.data.swig import load_situations, verb_counts

            split = OvSplit.from_counts(verb_counts(load_situations(a.train)), _read_verb_list(a.unseen),
                                        rare_max=a.rare_max)
        elif a.source == "zellers-choi":
            if not a.csv or not a.verbs:
                ap.error("--from zellers-choi needs --csv and --verbs")
            split = OvSplit.from_zellers_choi(a.csv, _read_verb_list(a.verbs), lemmas_path=a.lemmas, val=a.val)
        else:
            if not a.seen or not a.unseen:
                ap.error("--from lists needs --seen and --unseen (and optionally --rare)")
            split = OvSplit.from_lists(_read_verb_list(a.seen), _read_verb_list(a.rare) if a.rare else [],
                                       _read_verb_list(a.unseen))
    except (DataError, FileNotFoundError) as e:
        print(f"mipd split: {e}", file=sys.stderr)
        return 1
    split.save(a.out)
    print(f"{a.out}: " + ", ".join(f"{k} {len(v)}" for k, v in split.lists().items()) + f"  ({split.rule})")
    return 0
