"""A custom tool, registered by a plug-in and used by a scenario (see README.md)."""
