"""The toll-fraud guard on outbound calls: where calls may go, how many, how fast.

Stolen operator credentials are worth money only if they can dial expensive numbers fast; this bounds
both. Destinations are checked by E.164 prefix: premium-rate ranges are blocked by default (the list
below), ``OUTBOUND_ALLOWED_PREFIXES`` turns the check into an allow-list, and an allowed prefix more
specific than a blocked one wins (``+1900555`` allowed re-opens just that range). ACS user ids (8:acs:)
are not billed as PSTN calls and are always allowed.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

# Premium-rate and high-cost ranges blocked unless OUTBOUND_BLOCKED_PREFIXES says otherwise. Short and
# conservative: the usual targets of "international revenue share" fraud.
DEFAULT_BLOCKED_PREFIXES: tuple[str, ...] = (
    "+1900",  # US/Canada premium rate (900)
    "+1976",  # NANP 976 pay-per-call
    "+4490",  # UK 090x premium rate (covered by +449, listed for clarity)
    "+4491",  # UK 091x premium rate
    "+449",  # UK 09x premium rate
    "+49900",  # Germany 0900 premium rate
    "+3389",  # France 089x premium rate
    "+39899",  # Italy 899 premium rate
    "+34803",  # Spain 803/806/807/905 premium rate
    "+34806",
    "+34807",
    "+34905",
    "+979",  # ITU International Premium Rate Service
    "+881",  # Global Mobile Satellite System (Iridium, Thuraya…): very high per-minute cost
    "+882",  # International Networks: high cost, a classic fraud destination
    "+883",  # International Networks
)
_PREFIX = re.compile(r"^\+[0-9]{1,15}$")


def parse_prefixes(spec: str | None, *, allow_keywords: bool = False) -> tuple[str, ...]:
    """``+1,+44`` → ('+1', '+44'). With ``allow_keywords``: ``default`` expands to the built-in blocked
    list and ``none`` means an empty list. Raises ValueError naming the bad entry."""
    out: list[str] = []
    for item in (p.strip() for p in (spec or "").split(",")):
        if not item:
            continue
        low = item.lower()
        if allow_keywords and low == "default":
            out.extend(DEFAULT_BLOCKED_PREFIXES)
            continue
        if allow_keywords and low == "none":
            continue
        if not _PREFIX.match(item):
            kw = " (or the words default / none)" if allow_keywords else ""
            raise ValueError(f"{item[:40]!r} is not an E.164 prefix such as +1 or +4420{kw}")
        out.append(item)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    allowed: tuple[str, ...]  # empty = every number (except blocked)
    blocked: tuple[str, ...]

    @classmethod
    def from_settings(cls, allowed_spec: str | None, blocked_spec: str | None) -> DestinationPolicy:
        allowed = parse_prefixes(allowed_spec)
        if blocked_spec is None or not blocked_spec.strip():
            blocked = DEFAULT_BLOCKED_PREFIXES
        else:
            blocked = parse_prefixes(blocked_spec, allow_keywords=True)
        return cls(allowed=allowed, blocked=blocked)

    def refusal(self, raw_target: str) -> str | None:
        """None when the call may go ahead, else why not (the target is a validated raw id)."""
        if raw_target.startswith("8:acs:"):
            return None
        if not raw_target.startswith("4:+"):
            return "only E.164 phone numbers and ACS user ids (8:acs:) may be called"
        number = raw_target[2:]
        allowed_len = max((len(p) for p in self.allowed if number.startswith(p)), default=0)
        if self.allowed and allowed_len == 0:
            return f"{number} is not in OUTBOUND_ALLOWED_PREFIXES ({','.join(self.allowed)})"
        blocked = max((p for p in self.blocked if number.startswith(p)), key=len, default=None)
        # An explicitly allowed prefix at least as specific as the blocking one re-opens that range.
        if blocked is not None and len(blocked) > allowed_len:
            return (
                f"{number} is in the blocked range {blocked} (premium-rate / high-cost by default; "
                "see OUTBOUND_BLOCKED_PREFIXES and OUTBOUND_ALLOWED_PREFIXES)"
            )
        return None


class TokenBucket:
    """``rate_per_minute`` tokens, refilled continuously; a full bucket allows a burst of that many."""

    __slots__ = ("_at", "_capacity", "_per_second", "_tokens")

    def __init__(self, rate_per_minute: int, now: float) -> None:
        self._capacity = float(rate_per_minute)
        self._per_second = rate_per_minute / 60.0
        self._tokens = self._capacity
        self._at = now

    def _fill(self, now: float) -> None:
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._per_second)
        self._at = now

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 when one is there now)."""
        self._fill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._per_second

    def take(self, now: float) -> None:
        self._fill(now)
        self._tokens -= 1.0

    def full(self, now: float) -> bool:
        self._fill(now)
        return self._tokens >= self._capacity


class RateLimiter:
    """A bucket per credential plus one global bucket. A call needs a token from both; none is taken
    from either when one of them is empty, so a refused attempt costs nothing."""

    # Credentials seen are bounded (OIDC subjects are not a fixed list): the oldest full buckets go first.
    MAX_TRACKED = 10_000

    def __init__(self, per_key_per_minute: int, global_per_minute: int) -> None:
        self._per_key = per_key_per_minute
        self._global = TokenBucket(global_per_minute, time.monotonic())
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, who: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) >= self.MAX_TRACKED:
                self._evict(now)
            bucket = self._buckets[who] = TokenBucket(self._per_key, now)
        self._buckets.move_to_end(who)
        return bucket

    def _evict(self, now: float) -> None:
        for key in list(self._buckets)[: max(1, self.MAX_TRACKED // 10)]:
            # A full bucket carries no state worth keeping; a partly used one is kept unless we must.
            if self._buckets[key].full(now) or len(self._buckets) >= self.MAX_TRACKED:
                del self._buckets[key]

    def acquire(self, who: str) -> tuple[str, int] | None:
        """None when a token was taken; else (which limit, Retry-After seconds)."""
        now = time.monotonic()
        mine = self._bucket(who, now)
        wait_mine = mine.wait_time(now)
        if wait_mine > 0:
            return "OUTBOUND_RATE_PER_MINUTE", max(1, math.ceil(wait_mine))
        wait_all = self._global.wait_time(now)
        if wait_all > 0:
            return "OUTBOUND_GLOBAL_RATE_PER_MINUTE", max(1, math.ceil(wait_all))
        mine.take(now)
        self._global.take(now)
        return None
