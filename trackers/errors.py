"""Errors a user fixes by changing a config key or a file, not by reading a traceback.

The `lightning` command prints these as one line and exits with status 2.
"""


class SetupError(RuntimeError):
    """A missing dataset root, checkpoint or file, or a config value that cannot work; the message
    names the file and the config key (or command-line flag) to change."""


class MissingFileError(SetupError, FileNotFoundError):
    """A configured file or folder (dataset root, checkpoint, weights) does not exist."""


class BadFileError(SetupError, ValueError):
    """A configured file exists but cannot be used as it is (wrong format, wrong shapes)."""
