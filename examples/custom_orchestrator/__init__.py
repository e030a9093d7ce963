"""A custom orchestrator (the agent's brain), registered by a plug-in (see README.md)."""
