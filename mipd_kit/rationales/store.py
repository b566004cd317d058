"""The rationale store: ``run_dir/rationales.jsonl``, append-only, schema-versioned, resumable, multi-writer safe.

One judged rationale per line (the ``rationales.jsonl`` of every run folder)::

    {"schema": 1, "image": "riding_3.png", "kind": "glimpse"|"gaze", "role": null|"agent",
     "polarity": "positive"|"negative"|"dropped"|"unjudged", "text": str, "round": int, "score": float|null,
     "backend": str, "verdict": {"score", "accept", "reasons"}|null,
     "source": "generated"|"hard_negative"|"imported"|"unlabeled", "target": null|verb, "index": int}

Besides positives and negatives, two polarities are stored that are neither (every reader of training material --
:func:`collect`, :func:`to_authors_json`, the statistics -- leaves them out unless asked):

* ``"dropped"``: a judged rationale that would have been a negative but names the image's annotated verb (a glimpse
  the judge rejected, or a hard negative): "a negative that names the gold verb is not a negative". It is kept so
  that a resumed run does not generate it again, and counted (``jrg_stats.json``: ``negatives_dropped_gold_verb``).
* ``"unjudged"`` (with ``source`` ``"unlabeled"``): a description of an *unlabeled* image written by the captioner
  from the image alone -- no annotation, no judge (``score`` and ``verdict`` null). ``collect(...,
  include_unjudged=True)`` files them under ``"unjudged"``.

A record's key is ``(image, kind, role, round, backend, source, target, index)``; ``backend`` is the
fingerprint of generator, judge and prompts, so changing any of them starts a new set while keeping the old one.

Durability: every record is one ``os.write`` of a full line under an exclusive ``fcntl.flock`` on the file and,
inside a process, a ``threading.RLock`` of the writer (``flock`` on one shared descriptor does not exclude
threads), so concurrent writers (threads or processes) never interleave and one thread's torn-line repair never
cuts another thread's line in progress; before writing, a writer reads any lines other
writers appended since its last look, so a key is never written twice. A process killed mid-write can leave a
torn last line (no trailing newline): opening the store truncates it. Re-running a finished stage therefore
makes no calls: the loop skips keys already present.

Authors' format: MIPD's released rationales are per image four strings, ``pos_verb_caption``,
``neg_verb_caption``, ``pos_attr_caption``, ``neg_attr_caption`` (merged into their SWiG train JSON). Mapping:
verb captions = glimpse rationales; attr captions = gaze rationales. Export takes the best-scored positive
glimpse, the best negative glimpse (a hard negative when there is one) and, for the attr captions, the best
positive / negative gaze rationale of each role joined in role order. Import makes one glimpse record per verb
caption and one gaze record with ``role = null`` per attr caption (``collect`` files those under role ``"*"``);
their ``index`` is ``1000 * field + i`` (field 0..3 in the order above, ``i`` the position when a field is a
list of strings), so the four captions of an image have distinct keys.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from mipd_kit.data.records import DataError
from mipd_kit.fileio import atomic_write_text, dumps, loads_strict
from mipd_kit.redaction import redact_obj

SCHEMA = 1
KINDS = ("glimpse", "gaze")
POLARITIES = ("positive", "negative", "dropped", "unjudged")
#: the polarities that are training material (positives and negatives)
JUDGED = ("positive", "negative")
SOURCES = ("generated", "hard_negative", "imported", "unlabeled")
AUTHOR_FIELDS = ("pos_verb_caption", "neg_verb_caption", "pos_attr_caption", "neg_attr_caption")
ALL_ROLES = "*"


@dataclass(frozen=True)
class Rationale:
    """One judged rationale (a line of ``rationales.jsonl``)."""

    image: str
    kind: str
    role: Optional[str]
    polarity: str
    text: str
    round: int
    score: Optional[float]
    backend: str
    verdict: Optional[dict[str, Any]] = None
    source: str = "generated"
    target: Optional[str] = None
    index: int = 0
    schema: int = SCHEMA

    def key(self) -> tuple:
        return (self.image, self.kind, self.role, self.round, self.backend, self.source, self.target, self.index)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def key_of(d: Mapping[str, Any]) -> tuple:
    return (d["image"], d["kind"], d.get("role"), d["round"], d["backend"], d.get("source", "generated"),
            d.get("target"), d.get("index", 0))


def rationale_from_json(d: Any, where: str) -> Rationale:
    """Validate one decoded line; ``where`` names file and line in errors."""
    if not isinstance(d, dict):
        raise DataError(f"{where}: a record must be a JSON object")
    schema = d.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise DataError(f"{where}: schema {schema!r} is not supported (this code reads schema {SCHEMA})")
    missing = [k for k in ("image", "kind", "role", "polarity", "text", "round", "score", "backend") if k not in d]
    if missing:
        raise DataError(f"{where}: missing fields {missing}")
    if d["kind"] not in KINDS:
        raise DataError(f"{where}: kind {d['kind']!r} is not one of {KINDS}")
    if d["polarity"] not in POLARITIES:
        raise DataError(f"{where}: polarity {d['polarity']!r} is not one of {POLARITIES}")
    if d.get("source", "generated") not in SOURCES:
        raise DataError(f"{where}: source {d.get('source')!r} is not one of {SOURCES}")
    if not isinstance(d["text"], str) or not isinstance(d["round"], int):
        raise DataError(f"{where}: 'text' must be a string and 'round' an integer")
    known = set(Rationale.__dataclass_fields__)
    return Rationale(**{k: v for k, v in d.items() if k in known})


def _lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX)


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _repair_tail(fd: int) -> int:
    """Truncate a torn last line (no trailing newline); returns the resulting file size. Caller holds the lock."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    pos = size
    chunk = 4096
    while pos > 0:
        start = max(0, pos - chunk)
        buf = os.pread(fd, pos - start, start)
        if start + len(buf) == size and buf.endswith(b"\n"):
            return size
        idx = buf.rfind(b"\n")
        if idx >= 0:
            new = start + idx + 1
            os.ftruncate(fd, new)
            return new
        pos = start
    os.ftruncate(fd, 0)
    return 0


class JsonlLog:
    """Append-only JSONL file with flock'd single-write appends and torn-tail repair (base of the store).

    Safe for several processes (``flock``) and for several threads sharing one instance (a ``threading.RLock``
    taken before the ``flock``, around every read, repair and write).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._tlock = threading.RLock()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._offset = 0
        self._lineno = 0
        with self._tlock:
            _lock(self._fd)
            try:
                self.repaired_bytes = os.fstat(self._fd).st_size - _repair_tail(self._fd)
                self._scan()
            finally:
                _unlock(self._fd)

    def close(self) -> None:
        with self._tlock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _on_line(self, d: dict[str, Any], lineno: int) -> None:  # overridden
        pass

    def _scan(self) -> None:
        """Read lines appended since the last scan (caller holds the lock)."""
        size = os.fstat(self._fd).st_size
        if size < self._offset:  # truncated by another opener's repair
            self._offset, self._lineno = 0, 0
            self._reset()
        if size == self._offset:
            return
        data = os.pread(self._fd, size - self._offset, self._offset)
        end = data.rfind(b"\n") + 1
        if end < len(data):
            # a torn line at the end while we hold the lock means its writer died: cut it
            os.ftruncate(self._fd, self._offset + end)
            data = data[:end]
        for line in data[:end].splitlines():
            self._lineno += 1
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{self.path}: line {self._lineno} is not valid JSON ({e})") from e
            self._on_line(d, self._lineno)
        self._offset += end

    def _reset(self) -> None:  # overridden
        pass

    def append_line(self, d: Mapping[str, Any], accept=lambda: True) -> bool:
        """Append ``d`` as one line unless ``accept()`` (evaluated under the lock after catching up) is False.
        Secrets are redacted from every string of ``d`` first (:func:`mipd_kit.redaction.redact_obj`): a server that
        echoes a key in its reply never gets it stored."""
        d = redact_obj(dict(d))
        data = (dumps(d, ensure_ascii=False) + "\n").encode()
        with self._tlock:
            _lock(self._fd)
            try:
                self._scan()
                if not accept():
                    return False
                _write_all(self._fd, data)
                self._offset = os.fstat(self._fd).st_size
                self._lineno += 1
                self._on_line(dict(d), self._lineno)
                return True
            finally:
                _unlock(self._fd)

    def refresh(self) -> None:
        """Catch up with lines written by other writers."""
        with self._tlock:
            _lock(self._fd)
            try:
                self._scan()
            finally:
                _unlock(self._fd)


class RationaleStore(JsonlLog):
    """``rationales.jsonl`` with an in-memory key index (see module docstring).

    Thread-safe within a process through ``flock`` on one descriptor per store plus the writer's ``RLock``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._records: dict[tuple, Rationale] = {}
        super().__init__(path)

    def _reset(self) -> None:
        self._records = {}

    def _on_line(self, d: dict[str, Any], lineno: int) -> None:
        r = rationale_from_json(d, f"{self.path}: line {lineno}")
        self._records.setdefault(r.key(), r)

    def __contains__(self, key: tuple) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: tuple) -> Optional[Rationale]:
        return self._records.get(key)

    def records(self, backend: Optional[str] = None) -> list[Rationale]:
        """All records (optionally of one backend fingerprint), in file order."""
        with self._tlock:
            self.refresh()
            rs = list(self._records.values())
        return [r for r in rs if backend is None or r.backend == backend]

    def append(self, r: Rationale) -> bool:
        """Append ``r``; returns False (and writes nothing) when its key is already stored."""
        rationale_from_json(r.to_json(), f"{self.path}: new record for {r.image}")
        with self._tlock:
            return self.append_line(r.to_json(), accept=lambda: r.key() not in self._records)


def complete_lines(path: str | os.PathLike) -> list[tuple[int, bytes]]:
    """``(line number, bytes)`` of the non-empty complete lines of a JSONL file (a torn last line without its
    newline, a killed writer's, is left out)."""
    raw = Path(path).read_bytes()
    lines = raw.split(b"\n")
    if not raw.endswith(b"\n"):
        lines = lines[:-1]  # torn tail
    return [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()]


def parse_rationale_lines(numbered: Sequence[tuple[int, bytes]], path: str | os.PathLike) -> list[Rationale]:
    """The unique records (first of each key, file order) of numbered store lines; ``DataError`` naming the file and
    line of a bad one."""
    out: dict[tuple, Rationale] = {}
    for i, line in numbered:
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {i} is not valid JSON ({e})") from e
        r = rationale_from_json(d, f"{path}: line {i}")
        out.setdefault(r.key(), r)
    return list(out.values())


def read_rationales(path: str | os.PathLike) -> list[Rationale]:
    """Read ``rationales.jsonl`` (a torn last line is ignored; a bad line raises ``DataError`` naming it)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no rationale store (run `mipd rationales run` or notebook 02 first)")
    return parse_rationale_lines(complete_lines(p), p)


def collect(rationales: Iterable[Rationale], include_unjudged: bool = False) -> dict[str, dict[str, Any]]:
    """Group texts: ``{image: {"glimpse": {"positive": [..], "negative": [..]}, "gaze": {role: {...}}}}``.

    Order within a list: by score (high first for positives, low first for negatives), then round, index and text,
    so the same records in any file order give the same lists. Gaze records
    without a role (imported attr captions) are filed under role ``"*"``. Records that are neither positive nor
    negative (``"dropped"``, ``"unjudged"``) are left out; with ``include_unjudged`` the unlabeled pool's
    ``"unjudged"`` descriptions are filed under an ``"unjudged"`` list (``{"glimpse": {"unjudged": [..]}}``).
    """
    groups: dict[str, dict[str, Any]] = {}
    items: dict[tuple, list[Rationale]] = {}
    for r in rationales:
        if r.polarity not in JUDGED and not (include_unjudged and r.polarity == "unjudged"):
            continue
        role = None if r.kind == "glimpse" else (r.role or ALL_ROLES)
        items.setdefault((r.image, r.kind, role, r.polarity), []).append(r)
    for (image, kind, role, pol), rs in items.items():
        sign = -1 if pol == "positive" else 1
        # ties broken by the text itself: the order of the records in the file (the order their jobs completed)
        # never decides which rationales come first (and so which ``max_rationales`` NMPA keeps)
        rs.sort(key=lambda r: (sign * (r.score if r.score is not None else 0.0), r.round, r.index, r.text))
        g = groups.setdefault(image, {"glimpse": {"positive": [], "negative": []}, "gaze": {}})
        slot = g["glimpse"] if kind == "glimpse" else g["gaze"].setdefault(role, {"positive": [], "negative": []})
        slot.setdefault(pol, []).extend(r.text for r in rs)
    return groups


def _best(rs: Sequence[Rationale], positive: bool) -> Optional[Rationale]:
    if not rs:
        return None
    if positive:
        return max(rs, key=lambda r: (r.score or 0.0, r.round))
    hard = [r for r in rs if r.source == "hard_negative"]
    return min(hard or rs, key=lambda r: (r.score or 0.0, r.round, r.index))


def to_authors_json(rationales: Iterable[Rationale], role_order: Optional[Mapping[str, Sequence[str]]] = None
                    ) -> dict[str, dict[str, str]]:
    """Per image the four MIPD strings (mapping in the module docstring); missing parts are ``""``.

    Args:
        rationales: records.
        role_order: image -> roles in frame order (defaults to sorted role names).
    """
    by: dict[tuple, list[Rationale]] = {}
    images: list[str] = []
    for r in rationales:
        if r.polarity not in JUDGED:
            continue
        by.setdefault((r.image, r.kind, r.polarity), []).append(r)
        images.append(r.image)
    out: dict[str, dict[str, str]] = {}
    for image in dict.fromkeys(images):
        entry = {}
        for pol, vf, af in (("positive", "pos_verb_caption", "pos_attr_caption"),
                            ("negative", "neg_verb_caption", "neg_attr_caption")):
            g = _best(by.get((image, "glimpse", pol), []), pol == "positive")
            entry[vf] = g.text if g is not None else ""
            gaze = by.get((image, "gaze", pol), [])
            roles = sorted({r.role or ALL_ROLES for r in gaze})
            if role_order and image in role_order:
                order = list(role_order[image])
                roles.sort(key=lambda x: order.index(x) if x in order else len(order))
            texts = []
            for role in roles:
                b = _best([r for r in gaze if (r.role or ALL_ROLES) == role], pol == "positive")
                if b is not None:
                    texts.append(b.text.strip())
            entry[af] = " ".join(texts)
        out[image] = entry
    return out


def export_authors_json(rationales: Iterable[Rationale], out_path: str | os.PathLike,
                        role_order: Optional[Mapping[str, Sequence[str]]] = None,
                        merge_into: Optional[str | os.PathLike] = None) -> dict[str, dict[str, Any]]:
    """Write the four-field JSON atomically; with ``merge_into`` (a SWiG train JSON) the fields are added to its
    entries, as in the authors' ``train_..._cap_refined.json``. Returns what was written."""
    data: dict[str, dict[str, Any]] = to_authors_json(rationales, role_order)
    if merge_into is not None:
        mp = Path(merge_into)
        try:
            base = loads_strict(mp.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{mp}: cannot read the SWiG train JSON to merge into "
                            f"({getattr(e, 'strerror', None) or e})") from e
        if not isinstance(base, dict) or not all(isinstance(v, dict) for v in base.values()):
            raise DataError(f"{mp}: expected a SWiG train JSON (an object of image -> annotation objects)")
        merged = {}
        for image, entry in base.items():
            merged[image] = {**entry, **data.get(image, {f: "" for f in AUTHOR_FIELDS})}
        data = merged
    p = Path(out_path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, dumps(data, indent=1, ensure_ascii=False) + "\n")
    except OSError as e:
        raise DataError(f"{p}: cannot write the export ({e.strerror or e})") from e
    return data


def from_authors_json(data: Mapping[str, Any], backend: str, source_name: str = "authors JSON") -> list[Rationale]:
    """Records from the authors' four-field JSON (strings, or lists of strings); entries lacking all four fields
    are skipped (a SWiG train JSON without rationales); a field of the wrong type raises ``DataError``."""
    out: list[Rationale] = []
    if not isinstance(data, Mapping):
        raise DataError(f"{source_name}: expected an object keyed by image name")
    for image, entry in data.items():
        if not isinstance(entry, Mapping):
            raise DataError(f"{source_name}: entry {image!r} is not an object")
        if not any(f in entry for f in AUTHOR_FIELDS):
            continue
        for fi, f in enumerate(AUTHOR_FIELDS):
            v = entry.get(f, "")
            texts = [v] if isinstance(v, str) else v
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise DataError(f"{source_name}: {image!r} field {f!r} must be a string or a list of strings")
            for i, t in enumerate(t for t in texts if t.strip()):
                out.append(Rationale(image=image, kind="glimpse" if "verb" in f else "gaze", role=None,
                                     polarity="positive" if f.startswith("pos") else "negative", text=t.strip(),
                                     round=0, score=None, backend=backend, verdict=None, source="imported",
                                     index=1000 * fi + i))
    return out


def import_authors_json(path: str | os.PathLike, store: RationaleStore) -> int:
    """Append the records of an authors' JSON file to ``store``; returns how many were new."""
    p = Path(path)
    try:
        data = loads_strict(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{p}: cannot read the authors' rationale JSON ({e})") from e
    import hashlib
    backend = f"imported:{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()[:8]}"
    return sum(store.append(r) for r in from_authors_json(data, backend, str(p)))
