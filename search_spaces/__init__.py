"""Declarative search spaces and their compilers (see ``spec.py`` for the format)."""

from search_spaces.spec import Param, SearchSpace, SpaceError, available_spaces, load_space

__all__ = ["Param", "SearchSpace", "SpaceError", "available_spaces", "load_space"]
