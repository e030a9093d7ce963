"""Operator API keys: hashed at rest (SHA-256), compared in constant time, each with a role.

``OPERATOR_API_KEYS`` holds ``role:sha256hex`` entries, comma-separated. Only hashes are configured, so a
leaked settings file or environment dump does not hand out working keys. Make a key and its entry with::

    python -m callwright.security.keys new [--role operator|viewer]
    python -m callwright.security.keys hash -          # hash a key read from stdin (keeps it out of history)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
import sys
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
# A key longer than this is not one of ours; refusing it early keeps hashing cheap for any header size.
MAX_KEY_LENGTH = 512
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as configured in OPERATOR_API_KEYS."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe, no dots so it never looks like a JWT)."""
    return "cw_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKeyEntry:
    role: Role
    digest: bytes

    @property
    def key_id(self) -> str:
        """First 8 hex digits of the hash: names the key in logs and the audit log, reveals nothing."""
        return self.digest.hex()[:8]


def parse_api_keys(spec: str | None) -> list[ApiKeyEntry]:
    """Parse ``role:sha256hex,…``; a bad entry raises ValueError naming its position, never its value
    (someone may have pasted a plain key by mistake, and the error ends up in logs)."""
    entries: list[ApiKeyEntry] = []
    items = [p.strip() for p in (spec or "").split(",")]
    for n, item in enumerate(items, start=1):
        if not item:
            continue
        role, sep, digest = item.partition(":")
        role = role.strip().lower()
        digest = digest.strip().lower()
        if not sep or role not in ROLES:
            raise ValueError(
                f"entry {n}: expected role:sha256hex with role viewer or operator "
                "(make one with `python -m callwright.security.keys new`)"
            )
        if not _HEX64.match(digest):
            raise ValueError(
                f"entry {n}: the part after '{role}:' must be the 64 hex digit SHA-256 of the key, not the key "
                "itself (`python -m callwright.security.keys hash -` prints it)"
            )
        entries.append(ApiKeyEntry(role=role, digest=bytes.fromhex(digest)))  # type: ignore[arg-type]
    return entries


def match_key(entries: list[ApiKeyEntry], presented: str) -> ApiKeyEntry | None:
    """The entry whose hash equals the presented key's, compared against every entry (no early exit)
    so the time taken does not tell which entry, or how much of a hash, matched."""
    if not presented or len(presented) > MAX_KEY_LENGTH:
        return None
    digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    found: ApiKeyEntry | None = None
    for entry in entries:
        if hmac.compare_digest(entry.digest, digest) and found is None:
            found = entry
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callwright.security.keys", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    new = sub.add_parser("new", help="make a random key; prints the key and its OPERATOR_API_KEYS entry")
    new.add_argument("--role", choices=ROLES, default="operator")
    h = sub.add_parser("hash", help="print the SHA-256 of a key ('-' reads it from stdin)")
    h.add_argument("key")
    h.add_argument("--role", choices=ROLES, default=None, help="print a whole role:hash entry")
    args = parser.parse_args(argv)
    if args.cmd == "new":
        key = new_key()
        print(f"key (give to the client, store nowhere else): {key}")
        print(f"OPERATOR_API_KEYS entry: {args.role}:{hash_key(key)}")
        return 0
    key = sys.stdin.readline().rstrip("\r\n") if args.key == "-" else args.key
    if not key:
        print("error: empty key", file=sys.stderr)
        return 2
    print(f"{args.role}:{hash_key(key)}" if args.role else hash_key(key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
