"""The interactive demo's line parser: which typed lines are keys, commands or speech."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callwright.acs.media import TONE_CHARS
from callwright.demo.interactive import Invalid, Keys, Nothing, Quit, ShowHelp, Speak, parse_line, spoken_form


@pytest.mark.parametrize(
    ("line", "tones"),
    [
        ("5678#", "5678#"),
        ("  1234#\n", "1234#"),
        ("12 34#", "1234#"),
        ("555-1234#", "5551234#"),
        ("*9#", "*9#"),
        ("#", "#"),
        ("/dtmf 1234#", "1234#"),
        ("/DTMF 12*3#", "12*3#"),
        ("/dtmf 1 2 3", "123"),  # the command sends exactly what was typed, with or without '#'
        ("/dtmf abcd", "ABCD"),  # A-D are keys of the full DTMF keypad
    ],
)
def test_keys(line: str, tones: str) -> None:
    assert parse_line(line) == Keys(tones)


@pytest.mark.parametrize(
    "line",
    [
        "What are your opening hours?",
        "my policy number is 5678",  # digits inside a sentence are spoken, not keyed
        "1234",  # no '#': a caller saying a number
        "call me at 555 1234 # tomorrow",
        "#hashtag",
    ],
)
def test_speech(line: str) -> None:
    assert parse_line(line) == Speak(line.strip())


@pytest.mark.parametrize("line", ["/quit", "/Q", "/hangup", "/bye", "/exit"])
def test_quit(line: str) -> None:
    assert parse_line(line) == Quit()


def test_help_and_blank_lines() -> None:
    assert parse_line("/help") == ShowHelp()
    assert parse_line("") == Nothing()
    assert parse_line("   \n") == Nothing()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("/dtmf 12x#", "'X' is not a phone key"),
        ("/dtmf", "/dtmf needs keys"),
        ("/dtmf   ", "/dtmf needs keys"),
        ("/dial 1234", "unknown command /dial"),
        ("/dtmf " + "1" * 40, "at most 32"),
    ],
)
def test_bad_commands_are_explained(line: str, says: str) -> None:
    result = parse_line(line)
    assert isinstance(result, Invalid)
    assert says in result.message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_line_parses_to_a_command_and_keys_are_valid_tones(line: str) -> None:
    result = parse_line(line)
    if isinstance(result, Keys):
        assert result.tones and all(c in TONE_CHARS for c in result.tones)
    elif isinstance(result, Speak):
        assert result.text == line.strip() and result.text


def test_spoken_form_reads_numbers_digit_by_digit() -> None:
    assert spoken_form("my policy number is 5678") == "my policy number is five six seven eight"
    assert spoken_form("policy 1234, claim 2041") == "policy one two three four, claim two zero four one"
    # Short numbers stay numbers ("2 cars", "at 10"): flite says them as a person would.
    assert spoken_form("I have 2 cars, call at 10") == "I have 2 cars, call at 10"
