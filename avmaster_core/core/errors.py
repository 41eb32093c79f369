"""The package's own error for input that is the user's, not a bug: the CLI prints it as one line."""
from __future__ import annotations


class AvmasterError(Exception):
    """Base class for errors that are the user's input, not a bug: the CLI prints them as one line."""
