"""The model layer's own errors, in a module that imports nothing heavy.

Trainables import nothing from ``experiments``: a bad model option (``max_seq_length`` above the
tokenizer's limit, ``torch_compile`` not a boolean, ...) raises :class:`ModelConfigError`, bad
data :class:`DataError`, and the entry point turns each into one ``error:`` line like the other
layers' errors. Both live here, outside ``trainables.data`` (whose package imports
torch_geometric), so a driver can catch them without importing a model's libraries.
"""


class ModelConfigError(ValueError):
    """A model option a trainable cannot run with; the message is one line saying what to fix."""


class DataError(ValueError):
    """Bad user data; the message is one line naming the file (and line) at fault."""
