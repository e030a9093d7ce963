"""Virtual phones: scripted remote parties for emulated calls, and the caller's-ear report."""

from callwright.emulator.phone.phone import PhoneBook, ScriptFailure, VirtualPhone, build_phone_from_script
from callwright.emulator.phone.script import PhoneScript, ScriptError, load_script, parse_script

__all__ = [
    "PhoneBook",
    "PhoneScript",
    "ScriptError",
    "ScriptFailure",
    "VirtualPhone",
    "build_phone_from_script",
    "load_script",
    "parse_script",
]
