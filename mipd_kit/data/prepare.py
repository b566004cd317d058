"""Real datasets made ready to run: downloads at pinned revisions with verified checksums, the world folder laid out.

``mipd data prepare swig|hico|vcoco --root DIR``.
"""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
