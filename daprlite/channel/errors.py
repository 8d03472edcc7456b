"""Errors every app channel raises in the same terms."""

from __future__ import annotations


class AppUnavailableError(ConnectionError):
    """The app could not be reached at all (not listening, connection reset)."""
