"""The benchmark's phone scripts, built as YAML text for the Contoso Insurance scenario.

Every script turns off the phone's end-of-call transcription (pocketsphinx on the agent's audio): it
costs CPU on the machine under test and no figure needs it. No script waits for a phrase, for the same
reason; they pace themselves on the agent's audio (``of: next``, ``agent_done``) instead.
"""

from __future__ import annotations

import yaml

# Questions the insurance front desk answers with a long reply (so barge-ins have audio to cut into)
# and never with a transfer or a hang-up (so the call stays up for the whole script).
QUESTIONS = (
    "What are your opening hours?",
    "Where is your office?",
    "What time do you close?",
    "What is your address?",
    "Are you open on Saturday?",
    "Where are you located?",
)

# Sounds that are not interruptions: each should leave the agent talking.
PROBES: tuple[dict[str, object], ...] = (
    {"click": True},
    {"noise": "pink", "ms": 300, "db": -25},
    {"text": "uh-huh", "probe": True},
    {"noise": "white", "ms": 150, "db": -30},
    {"text": "okay", "probe": True},
    {"text": "umhum", "probe": True},  # flite spells "mm-hm" out as the letters M M H M
    {"text": "yeah", "probe": True},
)


def _doc(name: str, steps: list[object], *, timeout_s: float = 120, number: int = 1) -> str:
    doc = {"name": name, "direction": "inbound", "from": f"+1555{number:07d}", "to": "+15550001000",
           "timeout_s": timeout_s, "transcribe": False, "steps": steps}  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False)


def conversation(turns: int = 5, *, barge_at_ms: int = 1200, offset: int = 0) -> str:
    """Interrupt the greeting and then each reply ``barge_at_ms`` in with the next question.

    Every question is both a barge-in (onset during agent audio → StopAudio) and a turn (end of the
    question → first agent audio), so one call yields ``turns`` of each.
    """
    steps: list[object] = []
    for k in range(turns):
        q = QUESTIONS[(k + offset) % len(QUESTIONS)]
        at = 1500 if k == 0 else barge_at_ms
        steps.append({"barge_in": {"at_ms": at, "of": "next", "timeout_s": 20, "say": q}})
    steps += [{"silence": 1.5}, "hangup"]
    return _doc("bench conversation", steps)


def probes(replies: int = 2, per_reply: int = 4, *, offset: int = 0) -> str:
    """Ask questions and play probe sounds over each answer, about 1.5 s apart.

    Probes are paced by the caller's own clock (silences), not by the agent's utterances: the phone's
    idea of "the current agent utterance" changes at every pause between sentences. Each probe's report
    entry says whether the agent was audible when it began; only those count.
    """
    steps: list[object] = []
    k = offset
    for r in range(replies):
        q = QUESTIONS[r % len(QUESTIONS)]
        if r == 0:
            steps.append({"barge_in": {"at_ms": 1500, "of": "next", "timeout_s": 20, "say": q}})
        else:
            steps.append({"wait": {"agent_done": 800, "timeout_s": 30}})
            steps.append({"say": q})
        steps.append({"silence": 1.0})
        for _ in range(per_reply):
            steps.append({"say": PROBES[k % len(PROBES)]})
            steps.append({"silence": 1.2})
            k += 1
    steps += [{"wait": {"agent_done": 800, "timeout_s": 30}}, "hangup"]
    return _doc("bench false barge-in probes", steps, timeout_s=180)


def density(number: int) -> str:
    """A short realistic call: a question over the greeting, a full answer (where gaps would show), a
    second question, an interruption, hang up."""
    steps: list[object] = [
        {"barge_in": {"at_ms": 1500, "of": "next", "timeout_s": 30, "say": QUESTIONS[0]}},
        {"wait": {"agent_done": 800, "timeout_s": 40}},
        {"say": QUESTIONS[1]},
        {"barge_in": {"at_ms": 2000, "of": "next", "timeout_s": 30, "say": QUESTIONS[2]}},
        {"silence": 2.0},
        "hangup",
    ]
    return _doc("bench density", steps, timeout_s=150, number=number)


def soak(number: int) -> str:
    """The shortest call that still uses every lane: media, greeting, recognition, barge-in, hang-up."""
    steps: list[object] = [{"silence": 0.4}, {"say": "Hello."}, {"silence": 0.4}, "hangup"]
    return _doc("bench soak", steps, timeout_s=60, number=number)
