"""Errors a user can fix. The CLI prints them as one line (what, where, how) and exits 2."""


class GamelogError(Exception):
    """A problem with the user's input or settings, phrased for the user."""


class RecordError(Exception):
    """One input record cannot be converted; it becomes a reject with this reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
