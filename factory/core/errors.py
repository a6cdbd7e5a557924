"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class FactoryError(Exception):
    """A user-facing error: bad input, bad config, unreachable server. The message names the culprit."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """A library's exception as one line of a message: its first line (or its type, when it says nothing)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]
