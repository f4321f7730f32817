"""Name -> class registries that load themselves, so a new router, metric or backend is one
decorated class: ``@ROUTERS.register`` keys it by the class's own ``name``.

A registry that names a ``package`` imports every public module of that package the first time
it is asked for a name (so a module dropped into ``routers/`` is found without an import line
anywhere), then every module that an installed distribution lists under the entry-point group
``routelmt.<kind>s`` (third-party plugins: ``[project.entry-points."routelmt.routers"]``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar, overload

from routelmt.errors import ConfigError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

log = logging.getLogger(__name__)


class Registry(Generic[T]):
    """Maps user-facing names to factories; unknown names list the known ones."""

    def __init__(
        self,
        kind: str,
        *,
        key: str = "name",
        package: str | None = None,
        entry_point_group: str | None = None,
    ) -> None:
        self.kind = kind
        self.key = key
        self.package = package
        self.entry_point_group = entry_point_group
        self._items: dict[str, Callable[..., T]] = {}
        self._loaded = package is None and entry_point_group is None
        self._lock = threading.RLock()

    @overload
    def register(self, target: str) -> Callable[[F], F]: ...

    @overload
    def register(self, target: F) -> F: ...

    def register(self, target: str | F) -> F | Callable[[F], F]:
        """``@REG.register`` on a class keys it by its own ``name`` (or the registry's ``key``
        attribute); ``REG.register("key")(factory)`` names a factory that has none."""
        if isinstance(target, str):
            return lambda factory: self._add(target, factory)
        name = getattr(target, self.key, None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{target!r} has no string '{self.key}' to register it under")
        return self._add(name, target)

    def _add(self, name: str, factory: F) -> F:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = factory
        return factory

    def load(self) -> None:
        """Import the package's modules and the installed plugins once (they register on import)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self.package is not None:
                package = importlib.import_module(self.package)
                for module in pkgutil.iter_modules(package.__path__):
                    if module.name.startswith("_"):
                        continue
                    try:
                        importlib.import_module(f"{self.package}.{module.name}")
                    except ImportError as exc:  # an optional extra is missing: skip its members
                        log.debug("%s module %s not loaded: %s", self.kind, module.name, exc)
            if self.entry_point_group is not None:
                for point in entry_points(group=self.entry_point_group):
                    try:
                        point.load()
                    except Exception as exc:  # a broken plugin must not break the built-ins
                        log.warning("%s plugin %s failed to load: %s", self.kind, point.value, exc)

    def get(self, name: str) -> Callable[..., T]:
        self.load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def create(self, name: str, **kwargs: object) -> T:
        """Build ``name`` with ``kwargs``; an option the factory does not take is a ConfigError
        listing the ones it does (not a TypeError from deep inside)."""
        factory = self.get(name)
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # no signature to check against
            return factory(**kwargs)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(k for k in kwargs if k not in params)
            if unknown:
                takes = [
                    k
                    for k, p in params.items()
                    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k != "self"
                ]
                raise ConfigError(
                    f"{self.kind} '{name}' has no option {', '.join(map(repr, unknown))}; "
                    f"it takes: {', '.join(takes) or '(none)'}"
                )
        return factory(**kwargs)

    def names(self) -> list[str]:
        self.load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
