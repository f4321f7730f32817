"""Translators behind one interface; see ``backends.base``."""

from routelmt.backends.base import BACKENDS, Translator

__all__ = ["BACKENDS", "Translator"]
