"""Errors the CLI prints as one line and turns into a non-zero exit, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and what to do."""

    exit_code = 2
