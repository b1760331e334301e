"""The data layer's error type (defined in :mod:`trainables.errors`, which imports nothing heavy)."""

from trainables.errors import DataError

__all__ = ["DataError"]
