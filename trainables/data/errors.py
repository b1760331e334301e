"""The data layer's error type, in its own module so every loader can raise it without a cycle."""


class DataError(ValueError):
    """Bad user data; the message is one line naming the file (and line) at fault."""
