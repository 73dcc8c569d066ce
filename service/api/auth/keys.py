"""API keys: the keys file, the constant-time check of a presented key, new keys.

The file (``LUNGSEG_API_KEYS_FILE``) holds one client per line::

    # comments and blank lines are ignored
    pacs-bridge  3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea  segment
    dashboard    0b1c...                                                          benchmark,segment

The second field is the SHA-256 of the key in hex: the keys themselves are stored nowhere
(``python -m service.api.auth new-key <client-name> <scopes>`` makes one). A malformed line
stops the service at start-up with a message naming its number, never its content.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from service.api.auth.principal import SCOPES, AuthConfigError, Principal

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}")
HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
FORMAT = "<client-name> <sha256-hex-of-key> <scope>[,<scope>...]"
KEY_PREFIX = "lungseg_"


@dataclass(frozen=True)
class KeyEntry:
    """One line of the keys file: the client, the SHA-256 of its key, its scopes."""

    name: str
    digest: bytes = field(repr=False)
    scopes: frozenset[str]

    def principal(self) -> Principal:
        return Principal(self.name, "api-key", self.scopes)


def parse_scopes(text: str) -> frozenset[str]:
    """``segment,benchmark`` -> the set; ValueError on an empty or unknown scope."""
    scopes = [s.strip() for s in text.split(",")]
    if not all(scopes):
        raise ValueError("an empty scope in the list")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"an unknown scope (known: {', '.join(SCOPES)})")
    return frozenset(scopes)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError("the client name must be 1-128 letters, digits or . _ @ : + -")
    return name


def _entry(fields: list[str]) -> KeyEntry:
    if len(fields) != 3:
        raise ValueError(f"{len(fields)} fields instead of 3")
    name, digest, scopes = fields
    check_name(name)
    if not HEX_DIGEST.fullmatch(digest):
        raise ValueError("the second field is not the 64 hex digits of a SHA-256")
    return KeyEntry(name, bytes.fromhex(digest), parse_scopes(scopes))


class ApiKeys:
    """The clients of the keys file; :meth:`match` checks a presented key against all."""

    def __init__(self, entries: Sequence[KeyEntry]) -> None:
        self.entries = tuple(entries)

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def parse(cls, lines: Iterable[str], source: str) -> ApiKeys:
        """Parse the file's lines (see the module docstring).

        Raises:
            AuthConfigError: a malformed line, a duplicate client or key; the message names
                ``source`` and the line number, never the line.
        """
        entries: list[KeyEntry] = []
        names: dict[str, int] = {}
        digests: dict[bytes, int] = {}
        for number, raw in enumerate(lines, start=1):
            fields = raw.split()
            comment = next((i for i, f in enumerate(fields) if f.startswith("#")), len(fields))
            fields = fields[:comment]
            if not fields:
                continue
            try:
                entry = _entry(fields)
                if entry.name in names:
                    raise ValueError(f"the client name is already on line {names[entry.name]}")
                if entry.digest in digests:
                    raise ValueError(f"the same key hash as line {digests[entry.digest]}")
            except ValueError as err:
                raise AuthConfigError(
                    f"{source}: line {number}: {err}; expected `{FORMAT}`"
                ) from None
            names[entry.name] = digests[entry.digest] = number
            entries.append(entry)
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        """Read and parse the keys file at ``path`` (AuthConfigError when it cannot be read)."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise AuthConfigError(f"LUNGSEG_API_KEYS_FILE {path}: {reason}") from None
        return cls.parse(text.splitlines(), f"LUNGSEG_API_KEYS_FILE {path}")

    def match(self, key: str) -> KeyEntry | None:
        """The entry whose hash is the presented key's SHA-256, else None.

        Constant-time: the key's digest is compared with ``hmac.compare_digest`` against every
        entry, without stopping at a match, so the time does not say which client matched.
        """
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        found = None
        for entry in self.entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        return found


def new_key(name: str, scopes: str) -> tuple[str, str]:
    """A new random key and its keys-file line (ValueError on a bad name or scope)."""
    check_name(name)
    scope_list = ",".join(sorted(parse_scopes(scopes), key=SCOPES.index))
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return key, f"{name} {digest} {scope_list}"
