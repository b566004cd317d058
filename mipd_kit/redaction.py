"""Secrets never reach a file: the one redaction function every writer of run artefacts passes through.

What is replaced by ``[REDACTED]`` (:func:`redact`):

- **configured key values**: the value of every environment variable whose name ends in ``KEY``, ``TOKEN``,
  ``SECRET`` or ``PASSWORD`` (``OPENAI_API_KEY``, ``HF_TOKEN``...), of every variable named by an ``api_key_env``
  seen in this process (:func:`register_key_env`), and every value given to :func:`register_secret`;
- **key-like strings**: ``sk-...`` (OpenAI style), ``hf_...`` (Hugging Face), ``Bearer <token>``, ``AIza...``
  (Google), ``ghp_...`` / ``github_pat_...`` (GitHub), ``AKIA...`` (AWS access key ids);
- **credentials in URLs**: the user-info part (``https://user:pass@host`` -> ``https://[REDACTED]@host``) and the
  values of query parameters named like a credential (``key=``, ``api_key=``, ``apikey=``, ``token=``,
  ``access_token=``, ``secret=``, ``password=``, ``sig=``...).

:func:`check_api_key_env` is the one check of an ``api_key_env`` setting (a variable *name*, never a key), used by
the CLIs, the stage configs (so notebooks and ``mipd run`` refuse it too) and the samplers. :func:`find_secrets`
tells whether a text holds something :func:`redact` would replace (``mipd publish`` refuses such a run folder);
:func:`mipd_kit.fileio.redact_file` rewrites a text file through :func:`redact`.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Iterable, Optional, Sequence

REDACTED = "[REDACTED]"

#: key-like substrings, redacted wherever they appear
KEY_LIKE = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{16,}|ghp_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|(?:AIza[0-9A-Za-z_\-]{35}|AKIA[0-9A-Z]{16})(?![A-Za-z0-9]))"
    r"|Bearer\s+(?!\[REDACTED\])[^\s\"'<>]+")
#: ``scheme://user[:password]@`` -- the user-info part of a URL
URL_USERINFO = re.compile(r"(?<=://)(?!\[REDACTED\])[^/\s@:\"'<>]+(?::[^/\s@\"'<>]*)?@")
#: a credential-named query parameter's value (``?key=...``, ``&api_key=...``)
URL_QUERY_CRED = re.compile(
    r"(?i)(?<=[?&;])((?:api[_-]?key|apikey|key|token|access[_-]?token|auth|secret|client[_-]?secret|password|pass"
    r"|pwd|sig|signature|x-goog-api-key)=)(?!\[REDACTED\])[^&#\s\"'<>\\]+")
#: environment-variable name endings (upper-cased) whose values are treated as secrets
SECRET_ENV_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD")
#: the shortest configured secret value that is redacted (shorter ones would redact ordinary words)
MIN_SECRET_LEN = 8

_lock = threading.Lock()
_registered: set[str] = set()
_key_envs: set[str] = set()


def register_secret(value: str) -> None:
    """Redact ``value`` from everything this process writes from now on (ignored when shorter than 8 characters)."""
    if value and len(value) >= MIN_SECRET_LEN:
        with _lock:
            _registered.add(value)


def register_key_env(name: str) -> None:
    """Redact the value of the environment variable ``name`` (read at each :func:`redact`) from now on."""
    if name and env_name_ok(name):
        with _lock:
            _key_envs.add(name)


def configured_secrets() -> list[str]:
    """The secret values :func:`redact` replaces: registered values, registered variables' values and the values
    of every environment variable named like a key (longest first)."""
    with _lock:
        out = set(_registered)
        names = set(_key_envs)
    names |= {k for k in os.environ if k.upper().endswith(SECRET_ENV_SUFFIXES)}
    out |= {os.environ[k] for k in names if len(os.environ.get(k, "")) >= MIN_SECRET_LEN}
    return sorted(out, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = (), configured: Optional[Sequence[str]] = None) -> str:
    """``text`` with every configured or given secret, key-like string and URL credential replaced by
    ``[REDACTED]`` (see the module docstring). Given ``secrets`` of 4+ characters are replaced too; ``configured``
    (default :func:`configured_secrets`, read now) lets a caller redacting many strings read them once."""
    if not text:
        return text
    extra = [s for s in secrets if s and len(s) >= 4]
    conf = configured_secrets() if configured is None else configured
    for s in sorted(set(extra) | set(conf), key=len, reverse=True):
        if s in text:
            text = text.replace(s, REDACTED)
    text = KEY_LIKE.sub(REDACTED, text)
    if "://" in text:
        text = URL_USERINFO.sub(REDACTED + "@", text)
    if "=" in text:
        text = URL_QUERY_CRED.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact_obj(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """``obj`` (JSON-like: dicts, lists, tuples, strings) with :func:`redact` applied to every string (keys too)."""
    secrets = [s for s in secrets if s and len(s) >= 4] + configured_secrets()
    return _redact_obj(obj, secrets)


def _redact_obj(obj: Any, secrets: list[str]) -> Any:
    if isinstance(obj, str):
        return redact(obj, secrets, configured=())
    if isinstance(obj, dict):
        return {_redact_obj(k, secrets): _redact_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_redact_obj(v, secrets) for v in obj)
    return obj


def find_secrets(text: str) -> list[str]:
    """The kinds of secret found in ``text`` (``configured key``, ``key-like string``, ``URL credentials``);
    never the values themselves."""
    kinds = []
    if any(s in text for s in configured_secrets()):
        kinds.append("configured key")
    if KEY_LIKE.search(text):
        kinds.append("key-like string")
    if URL_USERINFO.search(text) or URL_QUERY_CRED.search(text):
        kinds.append("URL credentials")
    return kinds


def env_name_ok(name: str) -> bool:
    """Whether ``name`` can be an environment variable name (letters, digits, underscore; no leading digit)."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None


def looks_like_key(value: str) -> bool:
    """Whether ``value`` looks like a key rather than a variable name: key-like by pattern, or long (20+) and
    with lower case letters and digits, as generated tokens are and ``UPPER_CASE`` variable names are not."""
    if KEY_LIKE.search(value) or value.startswith(("sk-", "hf_", "Bearer")):
        return True
    return len(value) >= 20 and any(c.isdigit() for c in value) and any(c.islower() for c in value)


def check_api_key_env(value: Any, where: str = "api_key_env") -> str:
    """Return ``value`` when it can be the NAME of an environment variable holding a key ("" = no key).

    Raises:
        ValueError: one line naming ``where`` and never showing the value, when it is not a string, not a variable
            name, or looks like a key itself (then the value is also registered for redaction).
    """
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where} must be the NAME of an environment variable (a string), got "
                         f"{type(value).__name__}")
    if not env_name_ok(value) or looks_like_key(value):
        register_secret(value)
        raise ValueError(f"{where} must be the NAME of an environment variable that holds the key (e.g. "
                         "OPENAI_API_KEY); the value given is not a variable name or looks like a key itself "
                         "(not shown). Put the key in the environment and pass its name")
    register_key_env(value)
    return value
