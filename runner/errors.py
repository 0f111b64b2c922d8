"""Errors a user can fix. The CLI prints their message as one line and exits 2."""


class UserError(Exception):
    """A mistake in the user's input or environment: message names the file, field, value and fix."""
