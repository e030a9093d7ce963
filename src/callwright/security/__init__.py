"""Operator access control (API keys, OIDC bearer tokens, Host/Origin checks) and the toll-fraud guard.

The operator API (``/api/v1/calls*``, ``/api/v1/audit``, ``/metrics``) is the part of the server a person
or a dashboard talks to; ACS's own callbacks and media socket keep their ACS JWT checks (acs/auth.py).
"""
