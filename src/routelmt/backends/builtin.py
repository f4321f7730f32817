"""Imports the built-in backends so that they register themselves."""

from routelmt.backends import replay  # noqa: F401
