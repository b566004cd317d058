"""The JRG's inputs and the judge's conversation: the teacher's evidence (``teacher_evidence.json``), a world's
frame space and annotated situations, the roles a rationale chain covers, and the messages the judge gets about one
rationale (:func:`judge_messages`, also used by ``benchmarks/bench_llm_judge.py`` and
:mod:`mipd_kit.rationales.judge_agreement`). The refinement loop that uses them is :mod:`mipd_kit.rationales.jrg`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from mipd_kit.data.records import DataError, FrameSpace, Situation
from mipd_kit.language.base import Message
from mipd_kit.rationales import prompts as P

def load_evidence(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read ``teacher_evidence.json`` (``{image: {"top_verbs", "role_nouns"}}``), validating each entry."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected an object image -> evidence")
    for image, ev in data.items():
        if not isinstance(ev, dict) or not isinstance(ev.get("top_verbs", []), list) \
                or not isinstance(ev.get("role_nouns", {}), dict):
            raise DataError(f"{p}: entry {image!r} must be {{'top_verbs': [[verb, score]...], 'role_nouns': {{role: [[noun, score]...]}}}}")
        for item in ev.get("top_verbs", []):
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise DataError(f"{p}: entry {image!r} has a bad top_verbs item {item!r}")
        for role, cands in ev.get("role_nouns", {}).items():
            if not isinstance(cands, list) or not all(isinstance(c, (list, tuple)) and len(c) == 2 for c in cands):
                raise DataError(f"{p}: entry {image!r} role {role!r} must be a list of [noun, score]")
    return data


def load_world(world_dir: str | os.PathLike, split: str = "train") -> tuple[FrameSpace, dict[str, Situation]]:
    """Frame space and annotated situations of a world (SynthSitu or a real SWiG folder)."""
    from mipd_kit.data.swig import load_frame_space, load_situations
    w = Path(world_dir)
    for f in ("imsitu_space.json", f"{split}.json"):
        if not (w / f).exists():
            raise DataError(f"{w / f}: missing (a world folder needs imsitu_space.json and {split}.json)")
    space = load_frame_space(w / "imsitu_space.json")
    return space, load_situations(w / f"{split}.json", space)


def roles_of(space: FrameSpace, sit: Situation) -> tuple[str, ...]:
    """The verb's roles in frame order, plus any role the annotators used that the frame lacks."""
    return P.frame_roles(space, sit)


def user_message(text: str, image_path: Optional[str] = None) -> Message:
    """A user turn: the text alone, or the text and the image (an ``image_path`` part, for vision chat models)."""
    if image_path is not None:
        return {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_path", "path": image_path}]}
    return {"role": "user", "content": text}


def judge_messages(space: FrameSpace, sit: Situation, evidence: Optional[Mapping[str, Any]], kind: str,
                   role: Optional[str], text: str, *, threshold: float, templates: Optional[Mapping[str, str]] = None,
                   image_path: Optional[str] = None) -> list[Message]:
    """The judge's conversation about one rationale, exactly as the JRG sends it: :data:`prompts.SYSTEM_JUDGE`,
    then the :func:`prompts.build_judge_prompt` text (annotated frame, evidence, rationale), with the image when
    ``image_path`` is given (``send_images``). ``benchmarks/bench_llm_judge.py`` rebuilds stored verdicts' prompts
    with it."""
    prompt = P.build_judge_prompt(space, sit, evidence, kind, role, text, threshold=threshold, templates=templates)
    return [{"role": "system", "content": P.SYSTEM_JUDGE}, user_message(prompt, image_path)]

