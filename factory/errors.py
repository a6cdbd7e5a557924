"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class FactoryError(Exception):
    """A user-facing error: bad input, bad config, unreachable server. The message names the culprit."""
