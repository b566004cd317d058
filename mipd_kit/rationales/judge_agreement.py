"""How far a judge of the JRG (MIPD's Judgmental Rationales Generator) can be trusted: its verdicts on stored,
already judged rationales compared with the verdicts stored with them and with the world's rendered truth.

The measure is that of ``benchmarks/bench_llm_judge.py``: take a run's ``rationales.jsonl``, draw a seeded sample
balanced over rationale kind and the stored (reference) verdict (:func:`stratified_sample`), let the judge under test
answer the same judge prompt the JRG sent (``jrg_inputs.judge_messages``), and aggregate the per-rationale outcomes
(:class:`JudgedRationale`) with :func:`agreement_metrics`, a pure function. Truth is
``mipd_kit.rationales.content.is_correct`` against the world's ``rendered.jsonl`` (:func:`world_truth`): a glimpse is
correct when it names a verb of the image and no verb the image does not show; a gaze names no verb the image does not
show and, when its role's drawn entity is known, names that entity.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from mipd_kit.data.records import DataError
from mipd_kit.rationales.store import Rationale

#: the strata of :func:`stratified_sample`: (kind, stored verdict accepted)
STRATA: tuple[tuple[str, bool], ...] = (("glimpse", True), ("glimpse", False), ("gaze", True), ("gaze", False))
#: polarities of records that carry a judge's verdict (``dropped``: a rejected would-be negative naming the gold verb)
JUDGED_POLARITIES = ("positive", "negative", "dropped")


def stored_accept(r: Rationale) -> bool:
    """The stored judge's decision on a record: ``verdict["accept"]`` (the polarity when the verdict lacks it)."""
    v = r.verdict or {}
    return bool(v["accept"]) if isinstance(v.get("accept"), bool) else r.polarity == "positive"


def judged_records(records: Iterable[Rationale], backend_prefix: str = "") -> list[Rationale]:
    """Records that a judge decided on (positive, negative or dropped; not the unlabeled pool's ``unjudged``) whose
    backend starts with ``backend_prefix`` (e.g. ``"gen=captioner"``: written by the embedded captioner)."""
    return [r for r in records if r.polarity in JUDGED_POLARITIES and r.backend.startswith(backend_prefix)]


def stratum(r: Rationale) -> str:
    """``"<kind>-accepted"`` or ``"<kind>-rejected"`` by the stored verdict."""
    return f"{r.kind}-{'accepted' if stored_accept(r) else 'rejected'}"


def _order(r: Rationale) -> tuple:
    return (r.image, r.kind, r.role or "", r.source, r.target or "", r.round, r.index, r.backend, r.text)


def stratified_sample(records: Sequence[Rationale], n: int, seed: int = 0,
                      exclude_images: Iterable[str] = ()) -> list[Rationale]:
    """A seeded sample of ``n`` judged records, balanced over :data:`STRATA` (kind x stored verdict).

    Each stratum is put in a stable order, shuffled with ``random.Random(seed)``, and the sample takes one record of
    each non-empty stratum in turn, so the strata get equal shares and a small stratum's unused share goes to the
    others. The result does not depend on the order of ``records``.

    Returns:
        The sample in the order it was taken (strata interleaved), so that any prefix of it is the sample of that
        size: a judge stopped early has still seen every stratum alike. Fewer than ``n`` when the records run out.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    skip = set(exclude_images)
    rng = random.Random(seed)
    pools: list[list[Rationale]] = []
    for kind, acc in STRATA:
        pool = sorted((r for r in records if r.kind == kind and stored_accept(r) == acc and r.image not in skip),
                      key=_order)
        rng.shuffle(pool)
        pools.append(pool)
    out: list[Rationale] = []
    k = 0
    while len(out) < n and any(k < len(p) for p in pools):
        out += [p[k] for p in pools if k < len(p)][:n - len(out)]
        k += 1
    return out


def world_truth(records: Iterable[Rationale], world_dir: str | os.PathLike) -> dict[tuple, bool]:
    """``{record.key(): correct}`` by ``content.is_correct`` against the world's ``rendered.jsonl``.

    Raises:
        DataError: the world has no ``rendered.jsonl`` or lacks the record of an image (file and image named).
    """
    from mipd_kit.data.synthsitu.generate import RENDERED_FILE, read_rendered
    from mipd_kit.rationales.content import is_correct

    rendered = read_rendered(world_dir)
    out = {}
    for r in records:
        rec = rendered.get(f"images/{r.image}")
        if rec is None:
            raise DataError(f"{Path(world_dir) / RENDERED_FILE}: no record of image {r.image!r} (is this the world "
                            "the rationales were written on?)")
        out[r.key()] = is_correct(r, rec)
    return out


@dataclass(frozen=True)
class JudgedRationale:
    """One rationale judged again by the judge under test.

    Attributes:
        image, kind, role, source, text: the stored rationale.
        truth: correct by the world's rendered truth (:func:`world_truth`).
        reference_accept: the stored (reference) judge's decision.
        accept: the judge under test's decision; ``None`` when its reply did not parse as a verdict.
        score: its score (0-10), ``None`` when unparsed.
        reply: its raw reply (cut to 300 characters).
    """

    image: str
    kind: str
    role: Optional[str]
    source: str
    text: str
    truth: bool
    reference_accept: bool
    accept: Optional[bool]
    score: Optional[float]
    reply: str

    @property
    def stratum(self) -> str:
        return f"{self.kind}-{'accepted' if self.reference_accept else 'rejected'}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"stratum": self.stratum}


#: metrics of :func:`agreement_metrics`, in table order
METRICS: tuple[str, ...] = (
    "n", "parse_rate", "truth_correct_rate", "llm_accept_rate", "embedded_accept_rate", "agree_with_embedded",
    "llm_accuracy_vs_truth", "embedded_accuracy_vs_truth", "llm_precision", "llm_recall", "embedded_precision",
    "embedded_recall")


def _rate(xs: Sequence[Any], f) -> float:
    return 100.0 * sum(bool(f(x)) for x in xs) / len(xs) if xs else math.nan


def agreement_metrics(items: Sequence[JudgedRationale]) -> dict[str, float]:
    """Parse rate, accept rates, agreement and accuracy / precision / recall against the truth (pure; percent).

    ``llm_*`` are of the judge under test, over the replies that parsed; ``embedded_*`` of the stored reference
    judge, over all items. ``agree_with_embedded``: share of parsed replies with the reference's decision.
    Precision: share of accepted rationales that are correct; recall: share of correct rationales accepted. An
    undefined rate (no item to divide by) is NaN.
    """
    parsed = [i for i in items if i.accept is not None]
    return {
        "n": float(len(items)),
        "parse_rate": _rate(items, lambda i: i.accept is not None),
        "truth_correct_rate": _rate(items, lambda i: i.truth),
        "llm_accept_rate": _rate(parsed, lambda i: i.accept),
        "embedded_accept_rate": _rate(items, lambda i: i.reference_accept),
        "agree_with_embedded": _rate(parsed, lambda i: i.accept == i.reference_accept),
        "llm_accuracy_vs_truth": _rate(parsed, lambda i: i.accept == i.truth),
        "embedded_accuracy_vs_truth": _rate(items, lambda i: i.reference_accept == i.truth),
        "llm_precision": _rate([i for i in parsed if i.accept], lambda i: i.truth),
        "llm_recall": _rate([i for i in parsed if i.truth], lambda i: i.accept),
        "embedded_precision": _rate([i for i in items if i.reference_accept], lambda i: i.truth),
        "embedded_recall": _rate([i for i in items if i.truth], lambda i: i.reference_accept),
    }


def grouped_metrics(items: Sequence[JudgedRationale]) -> dict[str, dict[str, float]]:
    """:func:`agreement_metrics` per kind (``glimpse``, ``gaze``, ``all``) and per stratum (``glimpse-accepted`` ...),
    leaving out empty groups."""
    groups: dict[str, list[JudgedRationale]] = {"glimpse": [], "gaze": [], "all": list(items)}
    groups |= {f"{k}-{'accepted' if a else 'rejected'}": [] for k, a in STRATA}
    for i in items:
        groups[i.kind].append(i)
        groups[i.stratum].append(i)
    return {g: agreement_metrics(xs) for g, xs in groups.items() if xs}


def agreement_with(items: Sequence[tuple[Optional[bool], Optional[float]]],
                   reference: Sequence[Mapping[str, Any]]) -> float:
    """Share (percent) of ``(accept, score)`` pairs equal to the stored verdicts ``reference`` (``accept`` and
    ``score``): the check that a judge prompt was rebuilt exactly, when the judge that wrote the verdicts is
    deterministic and re-run on the rebuilt prompts."""
    if len(items) != len(reference):
        raise ValueError(f"{len(items)} verdicts vs {len(reference)} stored verdicts")
    same = [a == bool(v.get("accept")) and s is not None and v.get("score") is not None
            and float(s) == float(v["score"]) for (a, s), v in zip(items, reference)]
    return 100.0 * sum(same) / len(same) if same else math.nan
