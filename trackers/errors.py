"""The suite's exception types.

``SetupError`` and its children are errors a user fixes by changing a config key or a file, not by
reading a traceback: the `lightning` command prints them as one line and exits with status 2.
``SampleRejected`` / ``InvalidSample`` are the data pipeline's redraw signal.
"""


class SetupError(RuntimeError):
    """A missing dataset root, checkpoint or file, or a config value that cannot work; the message
    names the file and the config key (or command-line flag) to change."""


class MissingFileError(SetupError, FileNotFoundError):
    """A configured file or folder (dataset root, checkpoint, weights) does not exist."""


class BadFileError(SetupError, ValueError):
    """A configured file exists but cannot be used as it is (wrong format, wrong shapes)."""


class SampleRejected(Exception):
    """A drawn training sample cannot be used (raised by the sampler or the crops); it is redrawn silently.

    Control flow of the data pipeline, not a user error: it lives here, at the bottom, so the crop
    primitives can raise it without depending on the sampler.
    """


class InvalidSample(SampleRejected, ValueError):
    """A drawn sample cannot be used (degenerate box, crop entirely padding); the caller redraws."""
