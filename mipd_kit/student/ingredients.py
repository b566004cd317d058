"""The rows of the MIPD study and the ingredients of each, as one explicit table (plus the authors' loss weights).

MIPD (Multimodal Interactive Prompt Distillation for open-vocabulary grounded situation recognition) trains its
student with the supervised GSR losses, an L1 distillation of the student's verb feature towards the NMPA-aligned
teacher feature and a negative-guided term; it has **no** logit distillation. Every row of the study is a named set of
ingredients on the same student and the same supervised losses, so two rows differ only in what their names say:

- ``distill``: feature distillation (scene and role features) towards the teacher's features;
- ``glimpse`` / ``gaze``: those targets aligned by NMPA with the positive glimpse / gaze rationales;
- ``neg``: the negative-guided term (NMPA trained with it; the student's term on a projection of its own,
  ``OvGSRStudent.neg_proj``, never on the verb head's input), negatives naming the gold verb dropped;
- ``kd``: logit distillation of the teacher's zero-shot verb distribution (Hinton et al., 2015), its own ingredient;
- ``unlabeled``: scene (+ logit, with ``kd``) distillation on the world's unlabeled pool;
- ``all_labels``: the ceiling's ingredient: the unlabeled pool's ground truth (``unlabeled_gt.json``, every verb,
  unseen ones included) is trained on as labelled data, and every verb is trainable. Reported, never selected on.

``rationales`` names where a row's rationales come from: ``"run"`` (the run's judged rationales,
``run_dir/rationales.jsonl``), ``"template"`` (label-template rationales: the form without the content) or
``"shuffled"`` (rationales of another training image of the same verb) -- the two controls that tell content from
form --, ``"oracle"`` (rationales written from the world's ground truth: what a perfect teacher would write; the
positive control, ``mipd_kit.rationales.oracle``) or ``"oracle-shuffled"`` (the oracle's positives on another image of
the same verb); their files are ``run_dir/rationales-<source>.jsonl`` unless the distillation stage is given another
path.
:func:`markdown_table` renders :data:`ROWS` for docs/methods.md and the run report (a test keeps the page in step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Optional, Sequence

INGREDIENTS: tuple[str, ...] = ("distill", "glimpse", "gaze", "neg", "kd", "unlabeled", "all_labels")

#: the authors' loss weights (MIPD code, a CoFormer derivative): verb CE smoothing 0.3, L1 distillation x2, negative
#: x5, noun CE smoothing 0.2, box L1 x5, GIoU x5, box-exists BCE x5 -- the ``StudentConfig`` defaults of every row
AUTHORS_LOSSES: dict[str, object] = {"verb_smoothing": 0.3, "w_verb": 1.0, "distill_kind": "l1", "w_scene": 2.0,
                                     "w_role": 2.0, "w_neg": 5.0, "noun_smoothing": 0.2, "w_noun": 1.0, "w_l1": 5.0,
                                     "w_giou": 5.0, "w_exists": 5.0}

RationaleSource = Literal["", "run", "template", "shuffled", "oracle", "oracle-shuffled"]


@dataclass(frozen=True)
class Row:
    """One row of the study.

    Attributes:
        model: the ``metrics.json`` model name.
        kind: ``"reference"`` (no training: the teacher or the student backbone zero-shot) or ``"student"``.
        variant: the ``StudentConfig.variant`` that trains it (students only).
        uses: its ingredients (subset of :data:`INGREDIENTS`).
        rationales: where its rationales come from (``""``: none).
        what: one line for the table.
    """

    model: str
    kind: Literal["reference", "student"]
    variant: Optional[str]
    uses: frozenset
    rationales: RationaleSource
    what: str


def _s(model: str, variant: str, uses: Iterable[str], rationales: RationaleSource, what: str) -> Row:
    return Row(model, "student", variant, frozenset(uses), rationales, what)


_PAPER = ("distill", "glimpse", "gaze", "neg")

#: the one table of the study's rows, in report order (results tables, README, docs/methods.md): the references, the
#: ablation chain, then the controls and the unlabeled-pool rows. Every list of row, variant or model names derives
#: from it: :data:`VARIANTS`, :data:`Variant`, :data:`MODEL_NAMES`, ``mipd_kit.student.report.MODEL_ORDER``.
ROWS: dict[str, Row] = {r.model: r for r in (
    Row("teacher", "reference", None, frozenset(), "", "the embedded teacher zero-shot (the BLIP-2 of this world)"),
    Row("student-zs", "reference", None, frozenset(), "",
        "the frozen student backbone zero-shot (the CLIP of this world), no training"),
    _s("baseline", "baseline", (), "", "supervised GSR losses only"),
    _s("mipd-feat", "feat", ("distill",), "", "+ feature distillation towards the raw teacher features"),
    _s("mipd-feat-kd", "feat-kd", ("distill", "kd"), "", "+ feature distillation + logit KD (no rationales)"),
    _s("mipd-glimpse", "glimpse", ("distill", "glimpse"), "run", "ablation: glimpse-aligned scene target only"),
    _s("mipd-gaze", "gaze", ("distill", "glimpse", "gaze"), "run", "ablation: + gaze-aligned role targets"),
    _s("mipd-neg", "neg", _PAPER, "run", "ablation: + negative term (the paper's ingredients; = mipd)"),
    _s("mipd", "paper", _PAPER, "run", "the paper: NMPA-aligned glimpse + gaze targets, negative term; no logit KD"),
    _s("mipd-unlabeled", "unlabeled", (*_PAPER, "kd", "unlabeled"), "run",
       "older name of mipd-kd-unlabeled (same ingredients)"),
    _s("mipd-kd", "full", (*_PAPER, "kd"), "run", "mipd + logit KD"),
    _s("mipd-template", "template", _PAPER, "template", "mipd on label-template rationales (form, no content)"),
    _s("mipd-shuffled", "shuffled", _PAPER, "shuffled",
       "mipd on rationales of another image of the same verb (content not of this image)"),
    _s("mipd-oracle", "oracle", _PAPER, "oracle",
       "positive control: mipd on rationales written from the world's ground truth (a perfect teacher)"),
    _s("mipd-oracle-shuffled", "oracle-shuffled", _PAPER, "oracle-shuffled",
       "mipd-oracle with each image's oracle positives moved to another image of the same verb"),
    _s("upper", "upper", ("all_labels",), "",
       "ceiling: baseline also trained on the unlabeled pool's labels of every verb, unseen included"),
    _s("mipd-feat-unlabeled", "feat-unlabeled", ("distill", "unlabeled"), "",
       "mipd-feat + scene distillation on the unlabeled pool (no logit KD)"),
    _s("mipd-oracle-unlabeled", "oracle-unlabeled", (*_PAPER, "unlabeled"), "oracle",
       "positive control on the pool: mipd-oracle + distillation on the unlabeled pool, its targets aligned with "
       "oracle descriptions of the pool's images"),
    _s("mipd-feat-kd-unlabeled", "feat-kd-unlabeled", ("distill", "kd", "unlabeled"), "",
       "mipd-feat-kd + distillation on the unlabeled pool"),
    _s("mipd-kd-unlabeled", "kd-unlabeled", (*_PAPER, "kd", "unlabeled"), "run",
       "mipd-kd + distillation on the unlabeled pool"),
)}

#: the rows of the fair test (issue: teacher, student backbone zero-shot, baseline, feat, feat+kd, mipd, mipd+kd,
#: the two controls, the unlabeled pair); the distillation stage's default ``rows``
STUDY_ROWS: tuple[str, ...] = ("teacher", "student-zs", "baseline", "mipd-feat", "mipd-feat-kd", "mipd", "mipd-kd",
                               "mipd-template", "mipd-shuffled", "mipd-oracle", "mipd-oracle-shuffled", "upper",
                               "mipd-feat-kd-unlabeled", "mipd-kd-unlabeled")

#: variant -> its row (the students)
BY_VARIANT: dict[str, Row] = {r.variant: r for r in ROWS.values() if r.variant is not None}
#: the student variants (``StudentConfig.variant``), in :data:`ROWS` order
VARIANTS: tuple[str, ...] = tuple(BY_VARIANT)
#: the type of ``StudentConfig.variant`` (its choices are :data:`VARIANTS`; ``typing.get_args`` reads them)
Variant = Literal[VARIANTS]  # type: ignore[valid-type]
MODEL_NAMES: dict[str, str] = {v: BY_VARIANT[v].model for v in VARIANTS}
USES: dict[str, frozenset] = {v: BY_VARIANT[v].uses for v in VARIANTS}

#: the study's key paired differences (a - b)
KEY_DIFFERENCES: tuple[tuple[str, str], ...] = (("mipd", "mipd-feat"), ("mipd", "baseline"),
                                               ("mipd-kd", "mipd-feat-kd"), ("mipd", "mipd-template"),
                                               ("mipd", "mipd-shuffled"),
                                               ("mipd-kd-unlabeled", "mipd-feat-kd-unlabeled"),
                                               ("mipd-oracle", "mipd-feat"), ("mipd-oracle", "mipd-oracle-shuffled"),
                                               ("upper", "baseline"),
                                               ("mipd-oracle-unlabeled", "mipd-feat-unlabeled"))


def row_of(name: str) -> Row:
    """The row of a model name (or of a student variant name), ``ValueError`` naming the choices."""
    if name in ROWS:
        return ROWS[name]
    if name in BY_VARIANT:
        return BY_VARIANT[name]
    raise ValueError(f"unknown row {name!r}; choose from {sorted(ROWS)} (or a variant: {sorted(BY_VARIANT)})")


def markdown_table(rows: Sequence[str] = tuple(ROWS)) -> str:
    """The ingredients table in Markdown: one line per row, a column per ingredient, the rationale source."""
    head = "| model | " + " | ".join(INGREDIENTS) + " | rationales | what |"
    lines = [head, "|" + "---|" * (len(INGREDIENTS) + 3)]
    for name in rows:
        r = row_of(name)
        cells = ["x" if i in r.uses else "" for i in INGREDIENTS]
        lines.append(f"| `{r.model}` | " + " | ".join(cells) + f" | {r.rationales or '-'} | {r.what} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- gold negatives
def _verb_pattern(phrases: Iterable[str]) -> re.Pattern:
    """A whole-word regex for a verb's phrases; a single ``-ing`` word also matches its other forms (ride, rides,
    rode is not covered) through the stem, with a doubled final consonant undone (running -> run)."""
    alts = []
    for p in phrases:
        p = p.strip().lower()
        if not p:
            continue
        words = p.split()
        if len(words) == 1 and p.endswith("ing") and len(p) > 5:
            stem = p[:-3]
            stems = {stem} | ({stem[:-1]} if len(stem) > 2 and stem[-1] == stem[-2] else set())
            alts += [re.escape(s) + r"(?:e|es|s|ed|er|ing)?" for s in sorted(stems)]
        else:
            alts.append(r"\s+".join(re.escape(w) for w in words))
    return re.compile(r"\b(?:" + "|".join(alts) + r")\b", re.IGNORECASE)


def names_verb(text: str, phrases: Sequence[str]) -> bool:
    """True when ``text`` contains one of the verb's ``phrases`` as whole words (see :func:`_verb_pattern`)."""
    return bool(_verb_pattern(phrases).search(text))


def drop_gold_negatives(collected: Mapping[str, dict], gold: Mapping[str, str],
                        verb_words: Mapping[str, Sequence[str]]) -> tuple[dict[str, dict], int]:
    """Remove every negative rationale that names the image's gold verb.

    A negative saying "a man is riding a horse" for an image of riding pushes the student away from its own label;
    the judge should have refused it, and the student never trains on it. Glimpse and gaze negatives are both
    filtered; positives are kept as they are.

    Args:
        collected: ``mipd_kit.rationales.store.collect`` form, ``{image: {"glimpse": {"positive", "negative"},
            "gaze": {role: {...}}}}``.
        gold: image -> gold verb (training images; others are left as they are).
        verb_words: verb -> the phrases that name it (SynthSitu: the verb and its caption words,
            ``mipd_kit.data.synthsitu.captions.VERB_WORDS``; real mode: the verb name).

    Returns:
        ``(filtered copy, number of negatives dropped)``.
    """
    pats = {v: _verb_pattern([v.replace("_", " "), *verb_words.get(v, ())]) for v in set(gold.values())}
    out: dict[str, dict] = {}
    dropped = 0
    for im, c in collected.items():
        v = gold.get(im)
        if v is None or not c:
            out[im] = c
            continue
        pat = pats[v]

        def keep(slot: Optional[dict]) -> dict:
            nonlocal dropped
            slot = dict(slot or {})
            neg = list(slot.get("negative") or [])
            kept = [t for t in neg if not pat.search(t if isinstance(t, str) else str(t.get("text", "")))]
            dropped += len(neg) - len(kept)
            slot["negative"] = kept
            return slot

        out[im] = {**c, "glimpse": keep(c.get("glimpse")),
                   "gaze": {role: keep(s) for role, s in (c.get("gaze") or {}).items()}}
    return out, dropped


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the ingredients table (the one in docs/methods.md)."""
    print(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
