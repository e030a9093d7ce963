"""The ACS wire protocol: event and media message types, identifiers, JWT verification. Pure where possible."""
