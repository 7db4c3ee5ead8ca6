"""One exception type for user mistakes (bad names, values, files).

The CLI catches it and prints its message alone, without a traceback.
"""


class ConfigError(ValueError):
    """A user-facing error: the message names the file/field/value and what is valid."""
