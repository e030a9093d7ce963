"""Understanding the caller without an LLM: fuzzy + phonetic intent matching and slot parsers.

Phone STT garbles words in predictable ways ("ours" for "hours", "were" for "where", "for" for "four").
Two scores are combined per example phrase: rapidfuzz's token-set ratio over the content words (robust
to word order and filler), and the same ratio over Metaphone keys of those words (robust to
sound-alike substitutions). The best example decides the intent's score.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jellyfish
from rapidfuzz import fuzz, process

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "i'd",
        "i'm",
        "id",
        "im",
        "me",
        "my",
        "we",
        "you",
        "your",
        "yours",
        "is",
        "are",
        "am",
        "be",
        "to",
        "of",
        "in",
        "on",
        "at",
        "for",
        "it",
        "its",
        "this",
        "that",
        "please",
        "can",
        "could",
        "would",
        "will",
        "do",
        "does",
        "did",
        "just",
        "so",
        "and",
        "or",
        "like",
        "want",
        "wanna",
        "need",
        # Natural callers wrap requests in greetings and contractions (whisper writes them out);
        # none of these tells one intent from another.
        "hi",
        "hello",
        "hey",
        "yeah",
        "there",
        "guys",
        "what's",
        "whats",
        "that's",
        "it's",
        "i'll",
        "i've",
        "was",
        "just",
        "tell",
        "know",
        "us",
        "our",
        "about",
        "with",
    ]
)
# Backchannels and hesitations carry no intent; an utterance made only of them matches nothing.
FILLERS = frozenset(["uh", "um", "er", "erm", "ah", "oh", "hmm", "hm", "mm", "mhm", "huh", "uhuh", "well"])
_NON_WORD = re.compile(r"[^a-z0-9' ]+")

UNITS = {
    "zero": 0,
    "oh": 0,
    "o": 0,
    "nought": 0,
    "one": 1,
    "won": 1,
    "two": 2,
    "to": 2,
    "too": 2,
    "three": 3,
    "tree": 3,
    "four": 4,
    "for": 4,
    "fore": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "ate": 8,
    "nine": 9,
    "niner": 9,
}
TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
# Words that are digits only when we are listening for digits; elsewhere "to"/"for" are just words.
_AMBIGUOUS = {"to", "too", "for", "fore", "won", "ate", "o", "oh", "tree"}

YES = frozenset(
    ["yes", "yeah", "yep", "yup", "sure", "correct", "right", "ok", "okay", "affirmative", "absolutely", "definitely"]
)
NO = frozenset(["no", "nope", "nah", "not", "don't", "negative", "wrong", "incorrect"])


def normalize(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower().replace("’", "'")).split())


def content_words(text: str) -> list[str]:
    words = [w for w in normalize(text).split() if w not in FILLERS]
    kept = [w for w in words if w not in STOPWORDS]
    return kept or words


def phonetic(words: Iterable[str]) -> str:
    return " ".join(jellyfish.metaphone(w) or w for w in words)


def parse_digits(text: str, *, strict: bool = False) -> str | None:
    """Digits spoken or keyed: '1234#', 'one two three four', 'twelve thirty four', 'double five'.

    Returns None when the text holds no digits. With ``strict``, ambiguous words such as "for" and "to"
    are not read as digits (used when extracting digits from a sentence that has another purpose).
    """
    keyed = re.sub(r"[\s\-*#]", "", text)
    if keyed.isdigit():
        return keyed
    words = normalize(text.replace("-", " ")).split()
    out: list[str] = []
    i = 0
    repeat = 1
    while i < len(words):
        w = words[i]
        if strict and w in _AMBIGUOUS:
            i += 1
            continue
        if w.isdigit():
            out.append(w * repeat)
            repeat = 1
        elif w in ("double", "triple"):
            repeat = 2 if w == "double" else 3
        elif w in UNITS:
            out.append(str(UNITS[w]) * repeat)
            repeat = 1
        elif w in TEENS:
            out.append(str(TEENS[w]))
        elif w in TENS:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if nxt in UNITS and UNITS[nxt] > 0 and not (strict and nxt in _AMBIGUOUS):
                out.append(str(TENS[w] + UNITS[nxt]))
                i += 1
            else:
                out.append(str(TENS[w]))
        elif w == "hundred" and out:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            # "twelve hundred" = 1200 but "one hundred twenty" = 120: pad only when nothing follows
            if not (nxt in UNITS or nxt in TEENS or nxt in TENS or nxt == "and"):
                out.append("00")
            elif nxt in UNITS or nxt == "and":
                out.append("0")
        i += 1
    digits = "".join(out)
    return digits or None


def parse_yes_no(text: str) -> bool | None:
    words = set(normalize(text).split())
    no = bool(words & NO)
    yes = bool(words & YES)
    if yes == no:
        return None
    return yes


def match_choice(text: str, options: Sequence[str], threshold: float = 75) -> str | None:
    """The option (e.g. a doctor's name) the caller said, by fuzzy and phonetic match."""
    if not options:
        return None
    said = normalize(text)
    best = process.extractOne(said, [normalize(o) for o in options], scorer=fuzz.partial_token_set_ratio)
    if best and best[1] >= threshold:
        return options[best[2]]
    said_ph = phonetic(said.split())
    keys = [phonetic(normalize(o).split()) for o in options]
    best = process.extractOne(said_ph, keys, scorer=fuzz.partial_token_set_ratio)
    if best and best[1] >= threshold + 10:
        return options[best[2]]
    return None


@dataclass(frozen=True, slots=True)
class Match:
    intent: str
    score: float
    example: str


class IntentMatcher:
    """Scores an utterance against each intent's example phrases."""

    def __init__(self, intents: dict[str, Sequence[str]], threshold: float = 72) -> None:
        self.threshold = threshold
        self._examples: list[tuple[str, str, str, str]] = []  # intent, example, words, phonetic
        users: dict[str, set[str]] = {}
        for name, examples in intents.items():
            for ex in examples:
                words = content_words(ex)
                self._examples.append((name, ex, " ".join(words), phonetic(words)))
                for w in words:
                    users.setdefault(w, set()).add(name)
        self._intents_using = {w: len(names) for w, names in users.items()}

    def score(self, text: str) -> list[Match]:
        words = content_words(text)
        if not words:
            return []
        said, said_ph = " ".join(words), phonetic(words)
        best: dict[str, Match] = {}
        for name, ex, ex_words, ex_ph in self._examples:
            if " " not in ex_words and len(words) > 2:
                # A one-word example ("operator", "goodbye") is a request only when said (nearly) alone:
                # inside a longer sentence the word is no evidence ("... four goodbye are is" is noise, and
                # "my name is Alice Brown" must not end the call). Multi-word examples still score it.
                continue
            lexical = _blend(said, ex_words)
            # Sound-alike is weaker evidence, and worthless on one- or two-letter keys ("huh" -> "H").
            sound = _blend(said_ph, ex_ph) * 0.95 if len(said_ph.replace(" ", "")) >= 4 else 0.0
            s = max(lexical, sound, self._coverage(words, ex_words))
            if name not in best or s > best[name].score:
                best[name] = Match(name, s, ex)
        return sorted(best.values(), key=lambda m: m.score, reverse=True)

    def _coverage(self, said: list[str], ex_words: str) -> float:
        """Evidence from a long natural sentence that contains an example's words among many others
        ("what's the address of your office, I need to drop off some paperwork"), which whole-utterance
        ratios sink. Every *distinctive* word of the example (used by this intent alone) must be present;
        words several intents use ("what", "my") only break ties. Examples of one content word never
        count, so a lone "claim" or "bye" inside a sentence is not enough."""
        ex = ex_words.split()
        if len(ex) < 2:
            return 0.0
        distinctive = [w for w in ex if self._intents_using.get(w, 1) == 1]
        if not distinctive or not all(_word_in(w, said) for w in distinctive):
            return 0.0
        generic = [w for w in ex if w not in distinctive]
        found = sum(_word_in(w, said) for w in generic)
        return COVERAGE_SCORE + (2.0 * found / len(generic) if generic else 2.0)

    def best(self, text: str) -> Match | None:
        ranked = self.score(text)
        if ranked and ranked[0].score >= self.threshold:
            return ranked[0]
        return None


# Coverage evidence scores just above the default threshold (72) and below a pending slot's switch bar
# (threshold + 8): enough to answer a fresh request, never enough to abandon a slot being filled.
COVERAGE_SCORE = 78.0
COVERAGE_MIN_SHARE = 0.99


def _stem(word: str) -> str:
    # Enough morphology for "checking"/"check", "claims"/"claim", "located"/"locate".
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _word_in(word: str, said: list[str]) -> bool:
    """The word, its stem, or (for words of 5+ letters) a close spelling of it is among the said words."""
    if word in said:
        return True
    stem = _stem(word)
    if any(_stem(w) == stem for w in said):
        return True
    if len(word) < 5:
        return False
    return any(len(w) >= 4 and fuzz.ratio(word, w) >= 85 for w in said)


def _blend(a: str, b: str) -> float:
    # token_set alone scores 100 whenever one side's words are a subset of the other's, which makes a
    # one-word utterance match any long example containing it; averaging with token_sort penalises
    # the unmatched remainder without losing word-order tolerance.
    return 0.6 * fuzz.token_set_ratio(a, b) + 0.4 * fuzz.token_sort_ratio(a, b)
