"""The one exception type for mistakes a user can make (bad config, bad files, missing data)."""


class MtkitError(Exception):
    """A user-facing error: the CLI prints its message (no traceback) and exits with status 2.

    The message must name the file, line or config key at fault and say what to do.
    """
