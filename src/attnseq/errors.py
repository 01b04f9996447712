"""The one exception type for mistakes a user can make (bad config, bad data, missing file)."""


class AttnseqError(Exception):
    """A user-facing error: its message names the file / line / key and says what to do.

    The CLI prints it as one line, without a traceback, and exits with status 2.
    """
