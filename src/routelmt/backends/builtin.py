"""Imports the built-in backends so that they register themselves."""

from routelmt.backends import (
    hf,  # noqa: F401
    openai,  # noqa: F401
    replay,  # noqa: F401
)
