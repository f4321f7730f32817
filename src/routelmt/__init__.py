"""RouteLMT: budgeted hybrid LLM translation with a learned in-model router."""

from routelmt.errors import InputError, RouteLMTError

__version__ = "0.1.0"

__all__ = ["InputError", "RouteLMTError", "__version__"]
