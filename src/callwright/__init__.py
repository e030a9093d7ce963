"""Callwright: a real-time voice agent server for phone calls on Azure Communication Services."""

__version__ = "0.1.0"
