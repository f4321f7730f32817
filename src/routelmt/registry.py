"""Name -> class registries that load themselves, so a new router, metric or backend is one
decorated class: ``@ROUTERS.register`` keys it by the class's own ``name``.

A registry that names a ``package`` imports every public module of that package the first time
it is asked for a name (so a module dropped into ``routers/`` is found without an import line
anywhere), then every module that an installed distribution lists under the entry-point group
``routelmt.<kind>s`` (third-party plugins: ``[project.entry-points."routelmt.routers"]``).

A module or plugin that fails to import does not break the others, but it is never silent: it is
logged as a warning when the registry loads, and asking for a name it defines (found by reading
the module's source: the ``name = "..."`` of its registered classes) is a ConfigError naming the
import failure, not "unknown name". The built-in modules import their optional extras lazily,
so a failure here is a broken install or a broken plugin, never a missing extra.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
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
        #: what failed to import: (module or plugin, the names it defines if known, the error)
        self.failures: list[tuple[str, frozenset[str], str]] = []

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
                    if not module.name.startswith("_"):
                        self._import(f"{self.package}.{module.name}")
            if self.entry_point_group is not None:
                for point in entry_points(group=self.entry_point_group):
                    try:
                        point.load()
                    except Exception as exc:  # a broken plugin must not break the built-ins
                        self._failed(f"plugin {point.name} ({point.value})", {point.name}, exc)

    def _import(self, module: str) -> None:
        try:
            importlib.import_module(module)
        except Exception as exc:  # reported on lookup of its names; the others still load
            self._failed(module, _declared_names(module, self.key), exc)

    def _failed(self, where: str, names: set[str] | frozenset[str], exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.failures.append((where, frozenset(names), error))
        log.warning(
            "%s %s failed to import (%s); its members are unavailable", self.kind, where, error
        )

    def get(self, name: str) -> Callable[..., T]:
        self.load()
        try:
            return self._items[name]
        except KeyError:
            pass
        for where, names, error in self.failures:
            if name in names:
                raise ConfigError(
                    f"{self.kind} '{name}' is defined in {where}, which failed to import: {error}"
                )
        known = ", ".join(sorted(self._items)) or "(none)"
        broken = "".join(
            f"; {where} failed to import: {error}" for where, _, error in self.failures
        )
        raise ConfigError(f"unknown {self.kind} '{name}'; known: {known}{broken}")

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


def _declared_names(module: str, key: str) -> frozenset[str]:
    """The ``key = "..."`` string of each decorated class in ``module``'s source: the names it
    would have registered, read without importing it."""
    try:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        tree = ast.parse(Path(origin).read_text(encoding="utf-8")) if origin else ast.Module()
    except (ImportError, OSError, SyntaxError, ValueError):
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.decorator_list:
            for item in node.body:
                if (
                    isinstance(item, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == key for t in item.targets)
                    and isinstance(item.value, ast.Constant)
                    and isinstance(item.value.value, str)
                ):
                    names.add(item.value.value)
    return frozenset(names)
