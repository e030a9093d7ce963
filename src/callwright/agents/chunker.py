"""Cut a token stream into speakable clauses so TTS can start after the first one.

A boundary is only decided once the character after the punctuation has arrived: a '.' followed by a
digit is a decimal ("3.5"), a '.' after a known abbreviation ("Mr.", "Dr.") is not a sentence end, and a
',' inside "1,000" is followed by a digit. Commas, semicolons and colons only cut once the clause is
long enough to be worth a separate synthesis request (short clauses make choppy prosody).
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "sr",
        "jr",
        "prof",
        "vs",
        "e.g",
        "i.e",
        "no",
        "approx",
        "ave",
        "apt",
        "dept",
        "est",
        "inc",
        "ltd",
        "co",
        "mt",
        "ft",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "a.m",
        "p.m",
    }
)
_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:—"
_CLOSERS = "\"')]}»”’"
_WORD_BEFORE = re.compile(r"([\w.]+)$")


class ClauseChunker:
    def __init__(self, min_clause_chars: int = 24, max_chars: int = 220) -> None:
        self.min_clause_chars = min_clause_chars
        self.max_chars = max_chars
        self._buf = ""
        self._scan_from = 0

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the clauses that are now complete (possibly none)."""
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            self._scan_from = 0
            if piece:
                out.append(piece)
        return out

    def flush(self) -> list[str]:
        """End of stream: whatever is left is the last clause."""
        piece, self._buf, self._scan_from = self._buf.strip(), "", 0
        return [piece] if piece else []

    def _find_cut(self) -> int | None:
        buf = self._buf
        i = self._scan_from
        n = len(buf)
        while i < n - 1:
            ch = buf[i]
            if ch == "\n":
                return i + 1
            if ch in _SENTENCE_END or ch in _CLAUSE_END:
                end = i + 1
                while end < n and buf[end] in _CLOSERS:
                    end += 1
                if end >= n:
                    break  # need the next character to decide
                if buf[end].isspace() and self._is_boundary(buf, i, ch):
                    return end
            i += 1
        self._scan_from = max(0, min(i, n - 1))
        if n > self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space if space > 0 else self.max_chars
        return None

    def _is_boundary(self, buf: str, i: int, ch: str) -> bool:
        if ch in _CLAUSE_END:
            return len(buf[:i].strip()) >= self.min_clause_chars
        if ch == ".":
            m = _WORD_BEFORE.search(buf[:i])
            if m:
                word = m.group(1).lower()
                if word in _ABBREVIATIONS:
                    return False
                if len(word) == 1 and word.isalpha() and buf[m.start(1)].isupper():
                    return False  # an initial, as in "J. Smith"
        return True


def split_clauses(text: str, min_clause_chars: int = 24) -> list[str]:
    """Clauses of a complete text (the scenario agent's replies go through the same cutting)."""
    chunker = ClauseChunker(min_clause_chars=min_clause_chars)
    return chunker.feed(text) + chunker.flush()
