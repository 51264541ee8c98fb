"""The one exception type that the CLI turns into a clear message and exit status 2."""


class UserError(Exception):
    """Bad input from the user: a bad config, a missing file, a file that is not a checkpoint."""
