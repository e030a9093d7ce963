"""Phone scripts: the shipped examples load, and each kind of mistake gets one clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

import callwright.emulator as emulator_pkg
from callwright.emulator.phone import ScriptError, build_phone_from_script, load_script, parse_script
from callwright.emulator.phone.script import BargeIn, Dtmf, Hangup, Say, Silence, Wait

SCRIPTS = Path(emulator_pkg.__file__).parent / "scripts"


def test_shipped_examples_load() -> None:
    files = sorted(SCRIPTS.glob("*.yaml"))
    assert len(files) >= 4
    for f in files:
        script = load_script(f)
        assert script.steps, f
    barge = load_script(SCRIPTS / "barge_in.yaml")
    assert any(isinstance(s, BargeIn) and not s.say.probe for s in barge.steps)
    probes = load_script(SCRIPTS / "false_barge_in.yaml")
    assert [s.say.probe for s in probes.steps if isinstance(s, BargeIn)] == [True, True, True]
    outbound = load_script(SCRIPTS / "outbound_answer.yaml")
    assert outbound.direction == "outbound" and outbound.outbound.answer_after_s == 2.0


def test_all_step_forms_parse(tmp_path: Path) -> None:
    wav = tmp_path / "hello.wav"
    wav.write_bytes(b"")
    script = parse_script(
        """
name: forms
direction: outbound
to: "+15557770001"
outbound: {answer_after_s: 0.5, outcome: busy}
steps:
  - wait: 1.5
  - wait: agent_done
  - wait: {agent_done: 400, timeout_s: 5}
  - wait: {phrase: "how can I help"}
  - wait: disconnected
  - say: "hello there"
  - say: {text: "uh-huh", probe: true, voice: kal16}
  - say: {file: hello.wav, text: "hello"}
  - say: {noise: white, ms: 250, db: -30}
  - say: {click: true}
  - barge_in: {at_ms: 500, say: "stop please"}
  - dtmf: "12#"
  - dtmf: {digits: "9*", gap_ms: 100}
  - silence: 2
  - hangup
""",
        base_dir=tmp_path,
    )
    kinds = [type(s) for s in script.steps]
    assert kinds == [Wait] * 5 + [Say] * 5 + [BargeIn, Dtmf, Dtmf, Silence, Hangup]
    assert script.outbound.outcome == "busy"
    noise = script.steps[8]
    assert isinstance(noise, Say) and noise.probe and noise.ms == 250
    say_file = script.steps[7]
    assert isinstance(say_file, Say) and say_file.file == wav and not say_file.probe
    phone = build_phone_from_script("name: x\nto: '+15557770001'\ndirection: outbound\nsteps: [hangup]")
    assert phone.number == "+15557770001"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("steps: [hangup]", "field 'name' is required"),
        ("name: x\nsteps: []", "'steps' must be a non-empty list"),
        ("name: x\ncolour: red\nsteps: [hangup]", "unknown field 'colour'"),
        ("name: x\ndirection: sideways\nsteps: [hangup]", "field 'direction'"),
        ("name: x\noutbound: {outcome: maybe}\nsteps: [hangup]", "outbound: field 'outcome'"),
        ("name: x\nsteps: [dance]", "step 1: unknown step 'dance'"),
        ("name: x\nsteps: [{jump: 3}]", "step 1 (jump): unknown step kind 'jump'"),
        ("name: x\nsteps: [hangup, {say: {noise: brown}}]", "step 2 (say): field 'noise' must be 'pink' or 'white'"),
        ("name: x\nsteps: [{say: {noise: pink, ms: -5}}]", "step 1 (say): field 'ms' must be a positive integer"),
        ("name: x\nsteps: [{say: {text: hi, noise: pink}}]", "step 1 (say): 'say' needs exactly one of"),
        ("name: x\nsteps: [{say: {file: nope.wav}}]", "step 1 (say): field 'file': no such file"),
        ("name: x\nsteps: [{say: {text: hi, voice: bob}}]", "step 1 (say): field 'voice' must be one of"),
        ("name: x\nsteps: [{say: {text: ''}}]", "step 1 (say): field 'text' must be a non-empty string"),
        ("name: x\nsteps: [{wait: {agent_done: -1}}]", "step 1 (wait): field 'agent_done' must be a positive"),
        ("name: x\nsteps: [{wait: {seconds: 1, phrase: hi}}]", "step 1 (wait): 'wait' needs exactly one of"),
        ("name: x\nsteps: [{wait: {phrase: hi, timeout_s: 0}}]", "step 1 (wait): field 'timeout_s'"),
        ("name: x\nsteps: [{wait: soon}]", "step 1 (wait): 'wait' must be seconds"),
        ("name: x\nsteps: [{barge_in: {say: hi}}]", "step 1 (barge_in): field 'at_ms' is required"),
        ("name: x\nsteps: [{barge_in: {at_ms: 100}}]", "step 1 (barge_in): field 'say' is required"),
        ("name: x\nsteps: [{barge_in: {at_ms: 1, say: hi, of: later}}]", "step 1 (barge_in): field 'of'"),
        ("name: x\nsteps: [{dtmf: '12x'}]", "step 1 (dtmf): field 'digits' has 'X'"),
        ("name: x\nsteps: [{dtmf: {digits: '1', gap_ms: 0}}]", "step 1 (dtmf): field 'gap_ms' must be a positive"),
        ("name: x\nsteps: [{silence: -2}]", "step 1 (silence): field 'silence' must be a positive number"),
        ("name: x\nsteps: [{hangup: now}]", "step 1 (hangup): 'hangup' takes no value"),
        ("name: x\nsteps: [{say: hi, wait: 1}]", "step 1: a step must be a mapping with exactly one key"),
        ("name: [unclosed", "not valid YAML"),
        ("name: x\necho: loud\nsteps: [hangup]", "echo: field 'echo' must be a mapping"),
        ("name: x\necho: {db: 6}\nsteps: [hangup]", "echo: field 'db' must be a level at or below 0 dB"),
        ("name: x\necho: {delay_ms: 5000}\nsteps: [hangup]", "echo: field 'delay_ms' must be a whole number"),
    ],
)
def test_invalid_scripts_name_step_and_field(body: str, message: str) -> None:
    with pytest.raises(ScriptError) as exc:
        parse_script(body)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value).split(":", 1)[0]


def test_echo_is_parsed_with_defaults() -> None:
    assert parse_script("name: x\nsteps: [hangup]").echo is None
    echo = parse_script("name: x\necho: {db: -25}\nsteps: [hangup]").echo
    assert echo is not None and echo.db == -25.0 and echo.delay_ms == 100


def test_load_script_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="cannot read phone script"):
        load_script(tmp_path / "missing.yaml")
