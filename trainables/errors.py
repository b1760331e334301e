"""The model layer's own error for options a trainable cannot run with.

Trainables import nothing from ``experiments``: a bad model option (``max_seq_length`` above the
tokenizer's limit, ``torch_compile`` not a boolean, ...) raises :class:`ModelConfigError`, and the
entry point turns it into one ``error:`` line like the other layers' errors. Bad data raises
``trainables.data.DataError``.
"""


class ModelConfigError(ValueError):
    """A model option a trainable cannot run with; the message is one line saying what to fix."""
