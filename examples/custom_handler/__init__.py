"""A custom call-event handler, registered by a plug-in (see README.md)."""
