"""Web-like captions for the SynthSitu pretraining corpus.

Captions describe the scene of **every** verb (unseen ones too) in varied wording: verb synonyms, noun synonyms,
different word orders, partial descriptions, descriptions of the visual primitives ("with both arms raised above
the head", "lying flat", "underneath") and, at a configurable rate, wrong or noisy captions (as on the web).
This is what lets a caption-trained teacher know verbs the student never sees labelled.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mipd_kit.data.synthsitu.world import (
    CONCEPT_BY_NAME, MOTION_PHRASES, PLACE_BY_NAME, POSE_PHRASES, RELATION_PHRASES, VERBS, Verb)

#: verb -> other ways people say it in captions (first is the verb itself).
VERB_WORDS: dict[str, tuple[str, ...]] = {
    "riding": ("riding", "on the back of", "mounted on"), "driving": ("driving", "at the wheel of", "steering"),
    "pushing": ("pushing", "shoving"), "pulling": ("pulling", "tugging", "hauling"),
    "lifting": ("lifting", "picking up", "raising"), "carrying": ("carrying", "holding", "toting"),
    "throwing": ("throwing", "pitching", "hurling"), "hammering": ("hammering", "pounding", "nailing"),
    "chopping": ("chopping", "splitting", "hacking at"), "digging": ("digging", "shoveling"),
    "feeding": ("feeding", "giving food to"), "petting": ("petting", "stroking", "patting"),
    "walking": ("walking", "taking for a walk", "leading"), "cooking": ("cooking", "boiling", "stewing"),
    "painting": ("painting", "brushing paint on"), "climbing": ("climbing", "scaling", "going up"),
    "jumping": ("jumping", "leaping", "hopping"), "waving": ("waving", "waving hello to", "greeting"),
    "hugging": ("hugging", "embracing", "holding tight"), "sweeping": ("sweeping", "brushing the floor"),
    "kicking": ("kicking", "booting"), "catching": ("catching", "grabbing", "receiving"),
    "balancing": ("balancing", "carrying on the head"), "eating": ("eating", "munching", "biting"),
    "fishing": ("fishing", "angling", "casting a line"), "hoisting": ("hoisting", "heaving up", "raising high"),
    "dragging": ("dragging", "trailing", "lugging"), "pouring": ("pouring", "emptying", "tipping out"),
    "chasing": ("chasing", "running after", "pursuing"), "tossing": ("tossing", "flipping", "lobbing"),
    "sleeping": ("sleeping", "napping", "asleep"), "repairing": ("repairing", "fixing", "mending"),
    "sheltering": ("sheltering", "taking cover", "staying dry"), "planting": ("planting", "putting in the ground", "sowing"),
    "hiding": ("hiding", "concealed", "tucked away"),
}
PREPS = {"field": "in", "beach": "on", "street": "on", "kitchen": "in", "forest": "in", "snowfield": "on", "farm": "on"}

#: caption templates with named fields (word order and completeness vary)
TEMPLATES: tuple[str, ...] = (
    "{a_agent} {verb} {a_obj} {at_place}",
    "{at_place_cap}, {a_agent} {verb} {a_obj}",
    "{a_agent} {verb} {a_obj}",
    "{verb_cap} {a_obj} {at_place}",
    "{a_agent} {pose}, {verb} {a_obj}",
    "{a_agent} {verb} {a_obj}, {pose}, {motion}",
    "photo of {a_agent} {verb} {at_place}",
    "{a_obj} and {a_agent} who is {verb} it",
    "{a_agent} {pose} {rel} {a_obj}: {verb}",
    "{verb} {at_place}, {pose}",
    "{a_agent} {verb} {a_obj} {at_place} {motion}",
    "someone {verb} {a_obj}",
)
#: descriptions without the verb name (pure primitives)
PRIMITIVE_TEMPLATES: tuple[str, ...] = (
    "{a_agent} {pose}, {rel} {a_obj} {at_place}",
    "{a_agent} {pose} {rel} {a_obj}, {motion}",
)
#: noisy captions that do not describe the scene
NOISE_TEMPLATES: tuple[str, ...] = (
    "{a_agent} {verb_wrong} {a_obj_wrong}",
    "great day {at_place}!!",
    "img_{num}",
    "{verb_wrong} {at_place}",
    "my favourite photo",
)


def _art(word: str) -> str:
    word = word.replace("_", " ")
    return ("an " if word[0] in "aeiou" else "a ") + word


def _pick(rng: np.random.Generator, xs) -> str:
    return str(xs[int(rng.integers(len(xs)))])


def _noun_word(rng: np.random.Generator, concept: str) -> str:
    c = CONCEPT_BY_NAME[concept]
    return _pick(rng, c.ids) if rng.random() < 0.4 else c.name


def _place_word(rng: np.random.Generator, place: str) -> str:
    p = PLACE_BY_NAME[place]
    return _pick(rng, p.ids) if rng.random() < 0.3 else p.name


def scene_caption(verb: Verb, nouns: dict[str, str], place: str, rng: np.random.Generator,
                  noise_rate: float = 0.1, primitive_rate: float = 0.15) -> tuple[str, bool]:
    """One caption of a GSR-style scene; returns ``(caption, is_noisy)``.

    Args:
        verb: the depicted verb.
        nouns: role -> canonical concept.
        place: place name.
        rng: random generator.
        noise_rate: probability of a wrong / uninformative caption.
        primitive_rate: probability of a description by primitives only (no verb name).
    """
    agent = _noun_word(rng, nouns["agent"])
    main = nouns.get(verb.main_role) or ""
    obj = _noun_word(rng, main) if main else "something"
    pw = _place_word(rng, place)
    fields = {
        "a_agent": _art(agent), "a_obj": _art(obj) if main else obj,
        "verb": _pick(rng, VERB_WORDS[verb.name]) if rng.random() < 0.35 else verb.name,
        "at_place": f"{PREPS[place]} the {pw}", "pose": _pick(rng, POSE_PHRASES[verb.pose]),
        "rel": _pick(rng, RELATION_PHRASES[verb.relation]), "motion": _pick(rng, MOTION_PHRASES[verb.motion]),
    }
    fields["at_place_cap"] = fields["at_place"][0].upper() + fields["at_place"][1:]
    fields["verb_cap"] = fields["verb"][0].upper() + fields["verb"][1:]
    u = rng.random()
    if u < noise_rate:
        others = [v for v in VERBS if v.name != verb.name]
        wrong = others[int(rng.integers(len(others)))]
        fields["verb_wrong"] = wrong.name
        wc = wrong.fillers[wrong.main_role]
        fields["a_obj_wrong"] = _art(_pick(rng, wc))
        fields["num"] = str(int(rng.integers(1000, 9999)))
        return _clean(_pick(rng, NOISE_TEMPLATES).format(**fields)), True
    if u < noise_rate + primitive_rate:
        return _clean(_pick(rng, PRIMITIVE_TEMPLATES).format(**fields)), False
    return _clean(_pick(rng, TEMPLATES).format(**fields)), False


def hoi_caption(items: list[tuple[Verb, dict[str, str]]], place: str, rng: np.random.Generator,
                noise_rate: float = 0.1) -> tuple[str, bool]:
    """A caption of a multi-person scene ("two people: a man riding a horse and a child feeding a goat")."""
    if rng.random() < noise_rate:
        return f"people {PREPS[place]} the {_place_word(rng, place)}", True
    parts = []
    for verb, nouns in items:
        if rng.random() < 0.2 and len(parts) > 0:
            continue  # partial description
        agent = _noun_word(rng, nouns["agent"])
        obj = _noun_word(rng, nouns[verb.main_role])
        vw = _pick(rng, VERB_WORDS[verb.name]) if rng.random() < 0.3 else verb.name
        parts.append(f"{_art(agent)} {vw} {_art(obj)}")
    n = {2: "two", 3: "three", 4: "four"}.get(len(items), str(len(items)))
    head = _pick(rng, (f"{n} people {PREPS[place]} the {_place_word(rng, place)}: ", "", f"{n} people: "))
    return _clean(head + _pick(rng, (" and ", ", ", "; ")).join(parts)), False


def _clean(s: str) -> str:
    s = " ".join(s.replace(" ,", ",").split())
    return s.strip(" ,:")


def caption_vocabulary_note(verb_name: Optional[str] = None) -> dict[str, list[str]]:
    """The words captions may use for a verb and its primitives (diagnostics / docs)."""
    vs = [v for v in VERBS if verb_name in (None, v.name)]
    return {v.name: [*VERB_WORDS[v.name], *POSE_PHRASES[v.pose], *RELATION_PHRASES[v.relation]] for v in vs}
