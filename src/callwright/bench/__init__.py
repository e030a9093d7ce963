"""``callwright bench``: figures measured at the caller's ear by the emulator's virtual phones."""
