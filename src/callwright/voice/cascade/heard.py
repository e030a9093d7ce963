"""What the caller heard of an interrupted reply, from the played share of each segment's audio."""

from __future__ import annotations

import re
from collections.abc import Sequence

from callwright.voice.cascade.playback import Segment

# Sounds callers make to show they are listening; during agent speech they are not an interruption.
BACKCHANNELS = frozenset(
    {
        "uh huh", "uh-huh", "huh", "mm hmm", "mm hm", "mhm", "mm", "hmm", "hm", "um hum", "uh hum", "hum",
        "okay", "ok", "yeah", "yep", "right", "sure", "alright", "all right", "i see", "got it", "uh", "um", "ah", "oh",
    }
)  # fmt: skip
BACKCHANNEL_PHRASES = ("uh huh", "okay", "mm hmm", "yeah", "right", "i see", "got it")
_WORD = re.compile(r"[a-z']+")


# Short words that do mean "stop talking" when said over the agent.
# Only words that mean "stop talking" by themselves: a phrase like "can I talk to an agent" takes longer
# than the short sounds this applies to (the recogniser once heard "mm-hm" as "can an agent").
INTERRUPT_WORDS = frozenset({"stop", "wait", "no", "nope", "hold", "sorry", "excuse", "pardon", "hello", "hey"})


def is_short_non_interruption(text: str, speech_ms: int, *, max_ms: int = 600) -> bool:
    """A brief sound over the agent whose words carry no request: most often a backchannel the
    recogniser mis-heard (a domain language model maps "uh-huh" onto in-domain words)."""
    words = _WORD.findall(text.lower().replace("-", " "))
    if speech_ms > max_ms or len(words) > 3:
        return False
    return not any(w in INTERRUPT_WORDS for w in words)


def is_backchannel(text: str) -> bool:
    words = _WORD.findall(text.lower().replace("-", " "))
    if not words:
        return False
    joined = " ".join(words)
    if joined in BACKCHANNELS:
        return True
    return len(words) <= 3 and all(w in BACKCHANNELS for w in words)


def truncate_words(text: str, fraction: float) -> str:
    words = text.split()
    keep = int(len(words) * max(0.0, min(1.0, fraction)) + 1e-9)
    return " ".join(words[:keep])


def heard_text(segments: Sequence[Segment]) -> tuple[str, str]:
    """(heard, full) text of a reply; ``heard`` stops inside the first segment not fully played."""
    heard: list[str] = []
    for seg in segments:
        fraction = seg.heard_fraction()
        if fraction >= 0.999:
            heard.append(seg.text)
            continue
        part = truncate_words(seg.text, fraction)
        if part:
            heard.append(part)
        break
    return " ".join(heard).strip(), " ".join(s.text for s in segments).strip()
