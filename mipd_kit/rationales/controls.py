"""Control rationale sets for ablations: what the rationales' *content* adds.

* ``template`` (a generator backend, not here): the embedded template generator, which fills the teacher's top
  verb's frame abstract with nouns -- the label rewritten.
* ``shuffled`` (:func:`shuffle_positives`): a post-processing of a finished store. Every image's positives are
  replaced by the positives of *another image of the same verb* (same kind, same role), so the set keeps each
  verb's wording and label information but loses what is specific to the image; negatives stay the image's own.
  Images of a verb are paired by a seeded derangement (sorted names, shuffled with ``random.Random(seed)``, each
  image takes the next one's positives in that cycle; an image alone with its verb takes nothing), so the result is
  deterministic for a seed. Shuffled records carry the backend ``shuffled:s<seed>|<source backend>`` and
  ``verdict["shuffled_from"]`` = the donor image; a shuffled positive's ``index`` is ``100 + i``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from typing import Mapping, Sequence

from mipd_kit.data.records import Situation
from mipd_kit.rationales.store import Rationale


def shuffled_backend(source_backend: str, seed: int) -> str:
    """Backend key of a shuffled set."""
    return f"shuffled:s{seed}|{source_backend}"


def shuffle_positives(records: Sequence[Rationale], situations: Mapping[str, Situation],
                      seed: int = 0) -> list[Rationale]:
    """The shuffled control of one backend's records (see the module docstring); pure and deterministic.

    Args:
        records: the source store's records of one backend (positives, negatives; others are dropped).
        situations: image -> annotation (the verb groups).
        seed: seeds the pairing.

    Returns:
        the image's own negatives plus, per (kind, role), the donor image's positives, re-keyed to the image.
    """
    if not records:
        return []
    backend = shuffled_backend(records[0].backend, seed)
    by_verb: dict[str, list[str]] = defaultdict(list)
    for img in sorted({r.image for r in records if r.image in situations}):
        by_verb[situations[img].verb].append(img)
    donor_cycle: dict[str, list[str]] = {}
    rng = random.Random(seed)
    for verb in sorted(by_verb):
        imgs = by_verb[verb]
        rng.shuffle(imgs)
        for k, img in enumerate(imgs):  # the others of the cycle, nearest first
            donor_cycle[img] = [imgs[(k + j) % len(imgs)] for j in range(1, len(imgs))]
    pos: dict[tuple, list[Rationale]] = defaultdict(list)
    for r in records:
        if r.polarity == "positive":
            pos[(r.image, r.kind, r.role)].append(r)
    out: list[Rationale] = []
    slots = sorted({(r.image, r.kind, r.role) for r in records if r.image in donor_cycle},
                   key=lambda s: (s[0], s[1], s[2] or ""))
    for img, kind, role in slots:
        donor = next((d for d in donor_cycle[img] if pos.get((d, kind, role))), None)
        for i, r in enumerate(pos.get((donor, kind, role), []) if donor else []):
            # index 100 + i: never the key of the image's own negative
            out.append(replace(r, image=img, backend=backend, index=100 + i,
                              
                               verdict={**(r.verdict or {}), "shuffled_from": donor}))
    for r in records:
        if r.polarity == "negative" and r.image in donor_cycle:
            out.append(replace(r, backend=backend))
    return out
