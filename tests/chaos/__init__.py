"""Chaos tests: bad input, hostile webhooks, generated job histories and crashes, against the real parts."""
