"""The SynthSitu ontology: nouns (visual concepts with synonyms), places, visual primitives, verbs, HOI classes.

SynthSitu is the embedded grounded-situation world of mipd_kit (it stands in for SWiG / HICO-DET where no real
images or pretrained weights can be had). Every verb is realised by **shared primitives** -- the agent's body pose, the relation between agent and main object (contact and
relative position), the kind of the main object, a motion cue, and the place -- so that

* *seen* and *rare* verbs are trained on (rare ones with at most ~10 training images);
* ``unseen_compositional`` verbs are new combinations of primitives that all occur in *seen* verbs;
* ``unseen_novel`` verbs need at least one primitive (pose or relation) that **no** seen or rare verb shows, but that
  the pretraining captions describe in words (``POSE_PHRASES`` / ``RELATION_PHRASES``).

Nothing here does I/O; :func:`check_world` verifies the design constraints (used by the tests and the generator).
Noun ids are plain words; a *concept* is one visual entity class whose synonyms (``dog`` / ``puppy`` / ``canine``)
are all valid noun ids in the frame space, and annotators pick among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------------- primitives

#: body poses of the agent (stick figure). ``lie`` and ``kneel`` are shown by unseen-novel verbs only.
POSES = ("stand", "stride", "sit", "crouch", "arms_up", "arms_forward", "one_arm_up", "lean_forward",
         "lean_back", "kick", "jump", "lie", "kneel")
#: agent <-> main object relations. ``under`` and ``inside`` are shown by unseen-novel verbs only.
RELATIONS = ("on", "beside", "hold_front", "above_head", "push", "pull_rope", "hand_low", "thrown", "incoming",
             "touch", "to_mouth", "at_foot", "over", "climb", "under", "inside")
#: motion cues drawn around the scene.
MOTIONS = ("none", "speed_lines", "arrow_up", "arrow_down", "arc", "dust", "sparks", "steam")
#: kinds of objects.
KINDS = ("person", "animal", "vehicle", "tool", "container", "food", "plant", "ball", "furniture")

#: words the pretraining captions use for each primitive (first = canonical). Novel primitives are described here,
#: which is how a caption-trained teacher can learn the unseen-novel verbs.
POSE_PHRASES: dict[str, tuple[str, ...]] = {
    "stand": ("standing upright", "standing still with arms down", "upright"),
    "stride": ("walking with long strides", "striding", "mid-step"),
    "sit": ("sitting", "seated", "sitting down"),
    "crouch": ("crouching", "squatting low", "bent at the knees"),
    "arms_up": ("with both arms raised above the head", "arms stretched overhead", "reaching high with both hands"),
    "arms_forward": ("with arms stretched forward", "reaching forward", "arms held out in front"),
    "one_arm_up": ("with one arm raised", "one hand up in the air", "raising one arm"),
    "lean_forward": ("leaning forward", "bent forward at the waist", "leaning in"),
    "lean_back": ("leaning back", "leaning backwards with heels dug in", "tilted back"),
    "kick": ("with one leg swung forward", "raising a leg to kick", "mid-kick"),
    "jump": ("in mid-air", "leaping off the ground", "airborne with knees tucked"),
    "lie": ("lying flat", "lying down horizontally", "stretched out on the back"),
    "kneel": ("kneeling on one knee", "down on one knee", "kneeling"),
}
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "on": ("on top of", "on", "up on"),
    "beside": ("next to", "beside", "close to"),
    "hold_front": ("holding in front of the body", "gripping with both hands", "holding"),
    "above_head": ("held above the head", "raised overhead", "up over the head"),
    "push": ("pressing both hands against", "pushing from behind", "shoving"),
    "pull_rope": ("pulling by a rope", "tugging on a line attached to", "on a lead"),
    "hand_low": ("hanging from one hand", "held low at the side", "dangling from a hand"),
    "thrown": ("flying away from the hand", "sent through the air", "released into the air"),
    "incoming": ("flying towards the hands", "coming through the air to the hands", "arriving in the hands"),
    "touch": ("with a hand resting on", "touching", "in contact with"),
    "to_mouth": ("raised to the mouth", "held at the mouth", "brought up to the face"),
    "at_foot": ("at the foot", "struck by the foot", "by the foot"),
    "over": ("above", "clearing", "high over"),
    "climb": ("holding on to and up", "partway up", "clinging to"),
    "under": ("underneath", "beneath", "below"),
    "inside": ("inside", "hidden in", "tucked inside with only the head showing"),
}
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "none": ("",),
    "speed_lines": ("with speed lines behind", "moving fast", "speeding along"),
    "arrow_up": ("with an upward arrow", "going up", "moving upward"),
    "arrow_down": ("with a downward arrow", "coming down", "moving downward"),
    "arc": ("along a curved dotted arc", "in a high arc", "on an arcing path"),
    "dust": ("kicking up dust", "with puffs of dust", "dust flying"),
    "sparks": ("with sparks flying", "sparks at the point of contact", "with little sparks"),
    "steam": ("with steam rising", "steaming", "wavy steam lines above"),
}


# --------------------------------------------------------------------------------------------------- nouns

@dataclass(frozen=True)
class Concept:
    """One visual entity class.

    Attributes:
        name: canonical noun id (a plain word).
        synonyms: other valid noun ids for the same entity (annotators use them).
        kind: one of ``KINDS``.
        style: drawing routine in ``render.py``.
        size: height relative to the agent's height.
        aspect: width / height of its box.
        colour: base RGB colour (jittered per image).
        definition: short definition (imSitu ``def``).
    """

    name: str
    synonyms: tuple[str, ...]
    kind: str
    style: str
    size: float
    aspect: float
    colour: tuple[int, int, int]
    definition: str

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


def _c(name, syn, kind, style, size, aspect, colour, definition) -> Concept:
    return Concept(name, tuple(syn), kind, style, size, aspect, colour, definition)


CONCEPTS: tuple[Concept, ...] = (
    # people (agents and recipients)
    _c("man", ["guy", "male"], "person", "person", 1.0, 0.45, (40, 70, 170), "an adult male person"),
    _c("woman", ["lady", "female"], "person", "person_skirt", 1.0, 0.45, (190, 40, 60), "an adult female person"),
    _c("child", ["kid", "youngster"], "person", "person_small", 0.72, 0.45, (230, 170, 30), "a young person"),
    _c("worker", ["laborer", "workman"], "person", "person_hat", 1.0, 0.45, (230, 120, 20), "a person doing manual work, wearing a hard hat"),
    # animals
    _c("horse", ["pony", "stallion"], "animal", "quadruped_tall", 0.85, 1.25, (140, 90, 50), "a large hoofed animal ridden by people"),
    _c("camel", ["dromedary"], "animal", "quadruped_hump", 0.95, 1.2, (200, 160, 100), "a desert animal with a hump"),
    _c("elephant", ["pachyderm"], "animal", "quadruped_trunk", 1.0, 1.3, (130, 130, 140), "a huge grey animal with a trunk"),
    _c("cow", ["cattle", "heifer"], "animal", "quadruped_spots", 0.7, 1.4, (235, 235, 225), "a farm animal kept for milk"),
    _c("dog", ["puppy", "canine"], "animal", "quadruped_small", 0.42, 1.35, (160, 110, 60), "a domestic animal that barks"),
    _c("cat", ["kitten", "feline"], "animal", "quadruped_cat", 0.32, 1.3, (90, 90, 90), "a small domestic animal that purrs"),
    _c("sheep", ["lamb", "ewe"], "animal", "quadruped_wool", 0.45, 1.3, (245, 245, 235), "a woolly farm animal"),
    _c("goat", ["billy"], "animal", "quadruped_horns", 0.45, 1.2, (180, 170, 150), "a horned farm animal"),
    _c("bird", ["hen", "fowl"], "animal", "bird", 0.25, 1.0, (200, 60, 40), "a feathered animal"),
    # vehicles
    _c("car", ["automobile", "auto"], "vehicle", "car", 0.6, 1.9, (200, 30, 30), "a motor vehicle with four wheels"),
    _c("truck", ["lorry"], "vehicle", "truck", 0.8, 2.0, (30, 110, 60), "a large motor vehicle for goods"),
    _c("bicycle", ["bike", "cycle"], "vehicle", "bicycle", 0.5, 1.6, (40, 40, 40), "a two-wheeled vehicle"),
    _c("cart", ["wagon", "barrow"], "vehicle", "cart", 0.45, 1.5, (150, 100, 50), "a small wheeled vehicle for loads"),
    _c("sled", ["sledge", "toboggan"], "vehicle", "sled", 0.2, 2.2, (170, 40, 40), "a vehicle on runners for snow"),
    _c("boat", ["dinghy", "rowboat"], "vehicle", "boat", 0.45, 2.0, (240, 240, 240), "a small vessel for water"),
    # tools
    _c("hammer", ["mallet"], "tool", "hammer", 0.35, 0.6, (120, 120, 130), "a tool with a heavy head for striking"),
    _c("axe", ["hatchet"], "tool", "axe", 0.45, 0.5, (150, 150, 160), "a tool with a blade for chopping wood"),
    _c("shovel", ["spade"], "tool", "shovel", 0.6, 0.35, (110, 90, 60), "a tool for digging"),
    _c("broom", ["brush"], "tool", "broom", 0.65, 0.35, (200, 170, 60), "a tool with bristles for sweeping"),
    _c("paintbrush", [], "tool", "paintbrush", 0.25, 0.3, (220, 40, 160), "a small brush for paint"),
    _c("fishing_rod", ["rod", "pole"], "tool", "fishing_rod", 0.9, 0.8, (90, 60, 30), "a long pole with a line for fishing"),
    _c("wrench", ["spanner"], "tool", "wrench", 0.25, 0.45, (160, 160, 170), "a tool for turning nuts"),
    # containers
    _c("box", ["carton"], "container", "box", 0.3, 1.1, (190, 150, 90), "a cardboard container"),
    _c("crate", [], "container", "crate", 0.35, 1.0, (160, 120, 60), "a wooden slatted container"),
    _c("bucket", ["pail"], "container", "bucket", 0.25, 0.9, (60, 120, 200), "a round open container with a handle"),
    _c("basket", [], "container", "basket", 0.22, 1.3, (200, 160, 80), "a woven container"),
    _c("barrel", ["cask"], "container", "barrel", 0.4, 0.75, (120, 70, 30), "a round wooden container"),
    _c("sack", ["bag"], "container", "sack", 0.32, 0.8, (210, 190, 140), "a large cloth bag"),
    _c("pot", ["pan", "saucepan"], "container", "pot", 0.24, 1.5, (70, 70, 80), "a cooking vessel"),
    # food and plants
    _c("apple", [], "food", "apple", 0.15, 1.0, (210, 30, 30), "a round red fruit"),
    _c("bread", ["loaf"], "food", "bread", 0.13, 1.8, (210, 150, 70), "a baked loaf"),
    _c("cake", [], "food", "cake", 0.18, 1.3, (240, 200, 220), "a sweet baked dessert"),
    _c("carrot", [], "food", "carrot", 0.22, 0.45, (240, 120, 20), "an orange root vegetable"),
    _c("melon", ["watermelon"], "food", "melon", 0.2, 1.3, (60, 150, 50), "a large striped fruit"),
    _c("fish", [], "food", "fish", 0.14, 2.0, (120, 170, 200), "an animal that lives in water, caught for food"),
    _c("seedling", ["sprout", "sapling"], "plant", "seedling", 0.22, 0.8, (60, 170, 60), "a young plant"),
    _c("flower", ["blossom"], "plant", "flower", 0.22, 0.6, (240, 200, 40), "a flowering plant"),
    # balls and rocks
    _c("ball", ["football"], "ball", "ball", 0.16, 1.0, (250, 250, 250), "a round object for games"),
    _c("frisbee", ["disc"], "ball", "frisbee", 0.06, 2.5, (240, 90, 180), "a flying plastic disc"),
    _c("rock", ["stone", "boulder"], "ball", "rock", 0.18, 1.3, (130, 125, 120), "a lump of stone"),
    # furniture / scenery objects
    _c("ladder", [], "furniture", "ladder", 1.2, 0.35, (170, 130, 70), "a frame with rungs for climbing"),
    _c("tree", [], "furniture", "tree", 1.5, 0.8, (50, 130, 50), "a tall woody plant"),
    _c("wall", [], "furniture", "wall", 0.9, 0.9, (200, 120, 90), "an upright brick structure"),
    _c("log", ["trunk", "timber"], "furniture", "log", 0.2, 2.4, (130, 85, 45), "a cut length of tree trunk"),
    _c("fence", ["railing"], "furniture", "fence", 0.5, 1.6, (230, 230, 230), "a barrier of posts and rails"),
    _c("bed", ["cot"], "furniture", "bed", 0.32, 3.3, (90, 130, 200), "a piece of furniture for sleeping"),
    _c("mat", ["towel", "blanket"], "furniture", "mat", 0.06, 16.0, (230, 80, 80), "a flat piece of fabric on the ground"),
    _c("umbrella", ["parasol"], "furniture", "umbrella", 0.9, 1.2, (220, 60, 140), "a canopy on a pole for shelter"),
    _c("table", ["desk"], "furniture", "table", 0.55, 1.6, (150, 100, 60), "a piece of furniture with a flat top on legs"),
)


@dataclass(frozen=True)
class Place:
    """A place: a role value without a box, shown by the background (colour, texture, horizon)."""

    name: str
    synonyms: tuple[str, ...]
    sky: tuple[int, int, int]
    ground: tuple[int, int, int]
    texture: str
    definition: str

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


PLACES: tuple[Place, ...] = (
    Place("field", ("meadow", "grassland"), (150, 200, 240), (90, 160, 60), "grass", "an open area of grass"),
    Place("beach", ("shore", "seaside"), (140, 200, 250), (225, 205, 150), "sand", "sandy ground by the sea"),
    Place("street", ("road",), (180, 190, 200), (110, 110, 115), "asphalt", "a paved road in a town"),
    Place("kitchen", (), (230, 220, 190), (170, 120, 80), "tiles", "a room where food is cooked"),
    Place("forest", ("woods",), (60, 100, 60), (80, 70, 45), "trees", "an area covered with trees"),
    Place("snowfield", ("snow",), (200, 215, 235), (245, 245, 250), "snow", "ground covered in snow"),
    Place("farm", ("farmyard", "barnyard"), (170, 210, 235), (150, 120, 70), "dirt", "land used for farming"),
)


# --------------------------------------------------------------------------------------------------- verbs

@dataclass(frozen=True)
class Verb:
    """One SynthSitu verb.

    Attributes:
        name: the verb as a person would say it ("riding").
        kind: ``seen``, ``rare``, ``unseen_compositional`` or ``unseen_novel`` (the split design).
        pose, relation, motion: primitives (see ``POSES`` / ``RELATIONS`` / ``MOTIONS``).
        roles: ordered roles (``agent`` first, ``place`` last).
        fillers: role -> concepts allowed (``place`` -> place names); the *main* role is ``roles[1]``.
        abstract: imSitu-style abstract ("AGENT rides VEHICLE at PLACE").
        definition: dictionary definition that says what the body and the objects do (the pose and the relation
            a picture of the verb shows, in everyday words), for every verb alike: unseen verbs are described the
            way seen ones are, so what a rationale says about a pose or relation has a verb text to meet.
        role_defs: role -> definition.
        optional: roles that are absent (empty noun, no box) in a fraction of images.
        extra: a visual extra drawn for the secondary role (``in_hand`` / ``at_feet`` / ``in_water`` / ``tow``).
    """

    name: str
    kind: str
    pose: str
    relation: str
    motion: str
    roles: tuple[str, ...]
    fillers: dict[str, tuple[str, ...]]
    abstract: str
    definition: str
    role_defs: dict[str, str]
    optional: tuple[str, ...] = ()
    extra: str = ""

    @property
    def main_role(self) -> str:
        return self.roles[1]

    def primitives(self) -> dict[str, str]:
        """The visual primitives realising this verb (``object_kind`` from the main role's fillers)."""
        kinds = sorted({CONCEPT_BY_NAME[c].kind for c in self.fillers[self.main_role]})
        return {"pose": self.pose, "relation": self.relation, "motion": self.motion, "object_kind": "|".join(kinds)}


PEOPLE = ("man", "woman", "child", "worker")
ROLE_DEFS = {
    "agent": "the one doing the action",
    "vehicle": "the vehicle or animal being ridden or driven",
    "item": "the object acted upon",
    "tool": "the tool used",
    "food": "the food involved",
    "recipient": "the one receiving the action",
    "animal": "the animal involved",
    "container": "the container used",
    "obstacle": "the thing jumped over",
    "surface": "what the agent rests on",
    "shelter": "what the agent is under",
    "coagent": "the other person involved",
    "place": "where the action happens",
}


def _v(name, kind, pose, relation, motion, fillers: dict, abstract, definition, optional=(), extra="") -> Verb:
    roles = ("agent", *fillers.keys(), "place")
    full = {"agent": PEOPLE, **{r: tuple(v) for r, v in fillers.items()}}
    return Verb(name, kind, pose, relation, motion, roles, full, abstract, definition,
                {r: ROLE_DEFS[r] for r in roles}, tuple(optional), extra)


VERBS_NO_PLACE: tuple[Verb, ...] = (
    # ---- seen
    _v("riding", "seen", "sit", "on", "speed_lines", {"vehicle": ["horse", "camel", "elephant"]},
       "AGENT rides VEHICLE at PLACE", "sit on the back of an animal and control where it goes"),
    _v("driving", "seen", "sit", "on", "none", {"vehicle": ["car", "truck", "boat"]},
       "AGENT drives VEHICLE at PLACE", "sit in a vehicle and steer it along"),
    _v("pushing", "seen", "lean_forward", "push", "dust", {"item": ["cart", "car", "crate", "barrel"]},
       "AGENT pushes ITEM at PLACE", "lean forward and press both hands against something to move it away"),
    _v("pulling", "seen", "lean_back", "pull_rope", "none", {"item": ["cart", "sled", "boat", "crate"]},
       "AGENT pulls ITEM at PLACE", "lean back and draw something towards oneself with a rope"),
    _v("lifting", "seen", "crouch", "hold_front", "arrow_up", {"item": ["box", "crate", "barrel", "sack"]},
       "AGENT lifts ITEM at PLACE", "bend the knees and raise something from the ground, holding it in front of the body"),
    _v("carrying", "seen", "stand", "hand_low", "none", {"item": ["bucket", "basket", "sack", "box"]},
       "AGENT carries ITEM at PLACE", "stand holding something low at one's side while bearing its weight"),
    _v("throwing", "seen", "one_arm_up", "thrown", "arc", {"item": ["ball", "rock", "frisbee"]},
       "AGENT throws ITEM at PLACE", "raise one arm and send something through the air"),
    _v("hammering", "seen", "crouch", "hold_front", "sparks", {"tool": ["hammer"], "item": ["log", "box", "fence"]},
       "AGENT hammers ITEM with TOOL at PLACE", "crouch and strike something repeatedly with a hammer held in front", extra="at_feet"),
    _v("chopping", "seen", "arms_up", "above_head", "arrow_down", {"tool": ["axe"], "item": ["log", "tree"]},
       "AGENT chops ITEM with TOOL at PLACE", "raise an axe above the head with both arms and bring it down to cut wood", extra="at_feet"),
    _v("digging", "seen", "lean_forward", "hold_front", "dust", {"tool": ["shovel"]},
       "AGENT digs with TOOL at PLACE", "lean forward and break up the earth with a shovel held in front"),
    _v("feeding", "seen", "arms_forward", "beside", "none",
       {"recipient": ["horse", "cow", "dog", "goat", "sheep", "bird"], "food": ["apple", "carrot", "bread"]},
       "AGENT feeds FOOD to RECIPIENT at PLACE", "hold the arms out in front to give food to an animal beside one", extra="in_hand"),
    _v("petting", "seen", "crouch", "touch", "none", {"animal": ["dog", "cat", "sheep", "goat"]},
       "AGENT pets ANIMAL at PLACE", "crouch and stroke an animal gently with a hand resting on it"),
    _v("walking", "seen", "stride", "pull_rope", "none", {"animal": ["dog", "horse", "goat", "cow"]},
       "AGENT walks ANIMAL at PLACE", "walk with long strides leading an animal on a rope"),
    _v("cooking", "seen", "arms_forward", "hold_front", "steam", {"container": ["pot"], "food": ["fish", "carrot", "bread"]},
       "AGENT cooks FOOD in CONTAINER at PLACE", "reach forward over a pot held in front and heat food in it", optional=("food",)),
    _v("painting", "seen", "arms_forward", "touch", "none", {"item": ["wall", "fence", "boat"], "tool": ["paintbrush"]},
       "AGENT paints ITEM with TOOL at PLACE", "reach forward and cover a surface with paint from a brush touching it", extra="in_hand"),
    _v("climbing", "seen", "arms_up", "climb", "arrow_up", {"item": ["ladder", "tree", "wall"]},
       "AGENT climbs ITEM at PLACE", "go up something with both arms raised, holding on with hands and feet"),
    _v("jumping", "seen", "jump", "over", "arrow_up", {"obstacle": ["log", "fence", "rock", "box"]},
       "AGENT jumps over OBSTACLE at PLACE", "push oneself off the ground into the air and over an obstacle"),
    _v("waving", "seen", "one_arm_up", "beside", "none", {"recipient": list(PEOPLE)},
       "AGENT waves to RECIPIENT at PLACE", "raise one arm and move the hand to greet someone nearby"),
    _v("hugging", "seen", "arms_forward", "touch", "none", {"coagent": list(PEOPLE)},
       "AGENT hugs COAGENT at PLACE", "stretch the arms forward and hold someone closely"),
    # ---- rare
    _v("sweeping", "rare", "lean_forward", "hand_low", "dust", {"tool": ["broom"]},
       "AGENT sweeps with TOOL at PLACE", "lean forward and clean the ground with a broom held low"),
    _v("kicking", "rare", "kick", "at_foot", "arc", {"item": ["ball", "box", "rock"]},
       "AGENT kicks ITEM at PLACE", "swing one leg forward and strike something with the foot"),
    _v("catching", "rare", "arms_forward", "incoming", "arc", {"item": ["ball", "frisbee"]},
       "AGENT catches ITEM at PLACE", "reach forward with both arms and seize something flying towards the hands"),
    _v("balancing", "rare", "stand", "above_head", "none", {"item": ["basket", "pot", "box", "melon"]},
       "AGENT balances ITEM on the head at PLACE", "stand upright and keep something steady on top of the head"),
    _v("eating", "rare", "sit", "to_mouth", "none", {"food": ["apple", "bread", "cake", "melon", "carrot"]},
       "AGENT eats FOOD at PLACE", "sit and raise food to the mouth to chew and swallow it"),
    _v("fishing", "rare", "sit", "hold_front", "none", {"tool": ["fishing_rod"], "food": ["fish"]},
       "AGENT fishes with TOOL, catching FOOD at PLACE", "sit by the water holding a rod in front to catch fish",
       optional=("food",), extra="in_water"),
    # ---- unseen, compositional (every primitive occurs in a seen verb)
    _v("hoisting", "unseen_compositional", "arms_up", "above_head", "arrow_up", {"item": ["barrel", "crate", "box", "sack"]},
       "AGENT hoists ITEM at PLACE", "raise something heavy high above the head with both arms"),
    _v("dragging", "unseen_compositional", "lean_back", "hand_low", "dust", {"item": ["sack", "crate", "barrel", "box"]},
       "AGENT drags ITEM at PLACE", "lean back and pull something heavy along the ground, holding it low in one hand"),
    _v("pouring", "unseen_compositional", "arms_forward", "hold_front", "arrow_down", {"container": ["bucket", "pot"]},
       "AGENT pours from CONTAINER at PLACE", "reach forward holding a container in front and tip it so that liquid flows out"),
    _v("chasing", "unseen_compositional", "stride", "beside", "speed_lines", {"animal": ["dog", "sheep", "goat", "bird", "cow"]},
       "AGENT chases ANIMAL at PLACE", "run with long strides after an animal to catch it"),
    _v("tossing", "unseen_compositional", "one_arm_up", "thrown", "arc", {"food": ["apple", "bread", "carrot", "melon"]},
       "AGENT tosses FOOD at PLACE", "raise one arm and throw something light through the air"),
    # ---- unseen, novel (need a pose or relation no seen/rare verb shows)
    _v("sleeping", "unseen_novel", "lie", "on", "none", {"surface": ["bed", "mat"]},
       "AGENT sleeps on SURFACE at PLACE", "lie down flat on a bed or mat and rest with the eyes closed"),
    _v("repairing", "unseen_novel", "lie", "under", "sparks", {"item": ["car", "truck", "cart"], "tool": ["wrench"]},
       "AGENT repairs ITEM with TOOL at PLACE", "lie underneath a broken vehicle and fix it with a tool",
       optional=("tool",), extra="in_hand"),
    _v("sheltering", "unseen_novel", "stand", "under", "none", {"shelter": ["umbrella", "tree"]},
       "AGENT shelters under SHELTER at PLACE", "stand under something that covers one, to stay dry"),
    _v("planting", "unseen_novel", "kneel", "hold_front", "arrow_down", {"item": ["seedling", "flower"], "tool": ["shovel"]},
       "AGENT plants ITEM with TOOL at PLACE", "kneel on the ground and put a plant into the earth",
       optional=("tool",), extra="at_feet"),
    _v("hiding", "unseen_novel", "crouch", "inside", "none", {"container": ["box", "barrel", "crate", "basket"]},
       "AGENT hides in CONTAINER at PLACE", "crouch inside a container where one cannot be seen"),
)

#: verb -> plausible places (first ones more likely); every place is shared by many verbs.
VERB_PLACES: dict[str, tuple[str, ...]] = {
    "riding": ("field", "beach", "farm", "forest"), "driving": ("street", "beach", "farm"),
    "pushing": ("street", "farm", "snowfield"), "pulling": ("beach", "snowfield", "farm", "street"),
    "lifting": ("street", "kitchen", "farm"), "carrying": ("farm", "street", "beach", "field"),
    "throwing": ("field", "beach", "snowfield"), "hammering": ("farm", "street", "forest"),
    "chopping": ("forest", "farm", "snowfield"), "digging": ("field", "beach", "farm"),
    "feeding": ("farm", "field", "street"), "petting": ("field", "street", "kitchen", "farm"),
    "walking": ("street", "field", "beach", "forest"), "cooking": ("kitchen", "forest", "beach"),
    "painting": ("street", "farm", "beach"), "climbing": ("forest", "street", "farm"),
    "jumping": ("field", "forest", "snowfield", "beach"), "waving": ("street", "beach", "field", "snowfield"),
    "hugging": ("street", "kitchen", "beach", "field"), "sweeping": ("kitchen", "street", "farm"),
    "kicking": ("field", "beach", "street"), "catching": ("field", "beach", "snowfield"),
    "balancing": ("street", "beach", "farm"), "eating": ("kitchen", "field", "beach"),
    "fishing": ("beach", "forest"), "hoisting": ("street", "farm", "kitchen"),
    "dragging": ("beach", "snowfield", "farm", "street"), "pouring": ("kitchen", "farm", "field"),
    "chasing": ("field", "farm", "beach", "snowfield"), "tossing": ("field", "beach", "kitchen"),
    "sleeping": ("beach", "field", "kitchen", "forest"), "repairing": ("street", "farm"),
    "sheltering": ("street", "beach", "field", "snowfield"), "planting": ("field", "farm", "forest"),
    "hiding": ("street", "farm", "kitchen", "forest"),
}

VERBS: tuple[Verb, ...] = tuple(
    Verb(v.name, v.kind, v.pose, v.relation, v.motion, v.roles,
         {**v.fillers, "place": VERB_PLACES[v.name]}, v.abstract, v.definition, v.role_defs, v.optional, v.extra)
    for v in VERBS_NO_PLACE)

CONCEPT_BY_NAME: dict[str, Concept] = {c.name: c for c in CONCEPTS}
PLACE_BY_NAME: dict[str, Place] = {p.name: p for p in PLACES}
VERB_BY_NAME: dict[str, Verb] = {v.name: v for v in VERBS}

#: noun id (any synonym) -> canonical concept / place name
SYNONYM_OF: dict[str, str] = {i: c.name for c in CONCEPTS for i in c.ids} | {i: p.name for p in PLACES for i in p.ids}


# --------------------------------------------------------------------------------------------------- HOI classes

#: HOI verb -> (GSR verb whose primitives draw it, objects it combines with). HOI classes are (object, verb) pairs.
HOI_VERBS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ride": ("riding", ("horse", "camel", "elephant")),
    "drive": ("driving", ("car", "truck", "boat")),
    "push": ("pushing", ("cart", "car", "crate", "barrel")),
    "pull": ("pulling", ("cart", "sled", "boat", "crate")),
    "lift": ("lifting", ("box", "crate", "barrel", "sack")),
    "carry": ("carrying", ("bucket", "basket", "sack", "box")),
    "throw": ("throwing", ("ball", "rock", "frisbee")),
    "kick": ("kicking", ("ball", "box", "rock")),
    "catch": ("catching", ("ball", "frisbee")),
    "feed": ("feeding", ("horse", "cow", "dog", "goat", "sheep", "bird")),
    "pet": ("petting", ("dog", "cat", "sheep", "goat")),
    "walk": ("walking", ("dog", "horse", "goat", "cow")),
    "eat": ("eating", ("apple", "bread", "cake", "carrot")),
    "hug": ("hugging", ("man", "woman", "child")),
}
#: (object, verb) HOI compositions held out of hoi_train (zero-shot "unseen composition"); each verb and each
#: object of these still occurs in hoi_train with other partners.
HOI_ZERO_SHOT: tuple[tuple[str, str], ...] = (
    ("camel", "ride"), ("boat", "drive"), ("barrel", "push"), ("sled", "pull"), ("sack", "lift"),
    ("frisbee", "throw"), ("goat", "feed"), ("cat", "pet"), ("cake", "eat"), ("cow", "walk"),
)
HOI_HUMAN_ROLE = "agent"


@dataclass
class HOIClasses:
    """The HICO-style vocabulary of SynthSitu: objects, verbs, correspondence [hoi, object, verb]."""

    objects: list[str]
    verbs: list[str]
    correspondence: list[tuple[int, int, int]] = field(default_factory=list)

    def index(self, obj: str, verb: str) -> int:
        o, v = self.objects.index(obj), self.verbs.index(verb)
        for h, oo, vv in self.correspondence:
            if (oo, vv) == (o, v):
                return h
        raise KeyError((obj, verb))


def hoi_classes() -> HOIClasses:
    """Objects sorted alphabetically (as HICO-DET), verbs sorted, HOIs ordered by (object, verb) like HICO-DET."""
    objs = sorted({o for _, os_ in HOI_VERBS.values() for o in os_})
    verbs = sorted(HOI_VERBS)
    pairs = sorted({(o, v) for v, (_, os_) in HOI_VERBS.items() for o in os_})
    corr = [(k, objs.index(o), verbs.index(v)) for k, (o, v) in enumerate(pairs)]
    return HOIClasses(objs, verbs, corr)


def hoi_phrase(obj: str, verb: str) -> str:
    """``"a photo of a person riding a horse"`` (HICO-DET ``prompts.json`` style)."""
    ing = {"ride": "riding", "drive": "driving", "push": "pushing", "pull": "pulling", "lift": "lifting",
           "carry": "carrying", "throw": "throwing", "kick": "kicking", "catch": "catching", "feed": "feeding",
           "pet": "petting", "walk": "walking", "eat": "eating", "hug": "hugging"}[verb]
    noun = obj.replace("_", " ")
    art = "an" if noun[0] in "aeiou" else "a"
    return f"a photo of a person {ing} {art} {noun}"


# --------------------------------------------------------------------------------------------------- checks

def check_world() -> dict[str, int]:
    """Verify the design constraints; raises ``AssertionError`` naming the violated rule. Returns counts."""
    names = [v.name for v in VERBS]
    assert len(set(names)) == len(names), "duplicate verb names"
    kinds = {k: [v for v in VERBS if v.kind == k] for k in ("seen", "rare", "unseen_compositional", "unseen_novel")}
    assert len(VERBS) >= 30 and len(CONCEPTS) >= 40 and len(PLACES) >= 5
    assert len(kinds["rare"]) >= 6 and len(kinds["unseen_compositional"]) >= 4 and len(kinds["unseen_novel"]) >= 4
    trained = kinds["seen"] + kinds["rare"]
    sig = {}
    for v in VERBS:
        assert 3 <= len(v.roles) <= 5, f"{v.name}: frames must have 2-4 roles plus place"
        assert v.pose in POSES and v.relation in RELATIONS and v.motion in MOTIONS, v.name
        for r in v.roles[1:-1]:
            for c in v.fillers[r]:
                assert c in CONCEPT_BY_NAME, f"{v.name}: unknown concept {c}"
        key = (v.pose, v.relation, v.motion, v.primitives()["object_kind"])
        assert key not in sig, f"{v.name} and {sig.get(key)} share all primitives"
        sig[key] = v.name
    seen = kinds["seen"]
    for v in kinds["unseen_compositional"]:
        for prim in ("pose", "relation", "motion"):
            assert any(getattr(s, prim) == getattr(v, prim) for s in seen), f"{v.name}: {prim} not in a seen verb"
    for v in kinds["unseen_novel"]:
        assert any(all(getattr(s, p) != getattr(v, p) for s in trained) for p in ("pose", "relation")), \
            f"{v.name}: needs a pose or relation no seen/rare verb shows"
    classes = hoi_classes()
    assert len(classes.correspondence) >= 40
    for o, verb in HOI_ZERO_SHOT:
        classes.index(o, verb)
    return {"verbs": len(VERBS), "concepts": len(CONCEPTS), "noun_ids": len(SYNONYM_OF), "places": len(PLACES),
            "hois": len(classes.correspondence)}


def novel_primitives() -> dict[str, list[str]]:
    """Per unseen-novel verb, the primitives that no seen or rare verb shows."""
    trained = [v for v in VERBS if v.kind in ("seen", "rare")]
    out = {}
    for v in VERBS:
        if v.kind == "unseen_novel":
            out[v.name] = [f"{p}={getattr(v, p)}" for p in ("pose", "relation")
                           if all(getattr(s, p) != getattr(v, p) for s in trained)]
    return out
