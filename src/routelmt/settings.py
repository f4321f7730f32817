"""One typed configuration system for ``routelmt bench`` and ``routelmt serve``.

A schema is a dataclass whose fields are the config keys: each field's annotation is its type,
``key(default, help, ...)`` its default, help text and allowed range, and a field whose default
is another schema dataclass is a section (``data.limit``). From the schema come the defaults
(``defaults``), the type and range checks (``check``), the help (``describe``) and the
environment-variable overrides (``env_overrides``: ``ROUTELMT_BENCH__DATA__LIMIT=50``), and one
merge rule (``merge``) applies files, environment and flags in order. A loaded config is a plain
nested dict (what the YAML files hold, what stage hashes and reports record).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from routelmt.errors import ConfigError

_NULL = type(None)
_NAMES = {"NoneType": "null", "str": "a string", "int": "an integer", "float": "a number"}
_NAMES |= {"list": "a list", "dict": "a mapping", "bool": "true/false"}


def key(
    default: Any,
    help: str,  # noqa: A002 - the field's help text, as argparse calls it
    *,
    range: tuple[float, float] | None = None,  # noqa: A002
    open: bool = False,  # noqa: A002 - a free-form mapping (its keys are not checked)
) -> Any:
    """A config key: its default, what it does, and (for numbers) the closed range it must be
    in. Its type is the field's annotation."""
    meta = {"help": help, "range": range, "open": open}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(schema: type, help: str) -> Any:  # noqa: A002
    """A nested group of keys (another schema dataclass)."""
    return field(default_factory=schema, metadata={"help": help, "section": schema})


@dataclass(frozen=True)
class Key:
    """One leaf of a schema: its dotted name, the runtime types it accepts, and its field."""

    dotted: str
    kinds: tuple[type, ...] | None  # None: any value
    help: str
    range: tuple[float, float] | None
    open: bool


def _kinds(annotation: Any) -> tuple[type, ...] | None:
    """Runtime types of an annotation: ``int | None`` -> (int, NoneType); float accepts int."""
    if annotation is Any:
        return None
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        out: list[type] = []
        for arg in typing.get_args(annotation):
            out += [k for k in _kinds(arg) or () if k not in out]
        return tuple(out)
    origin = typing.get_origin(annotation) or annotation
    return (int, float) if origin is float else (origin,)


def keys(schema: type, prefix: str = "") -> Iterator[Key]:
    """Every leaf key of ``schema``, in declaration order."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        dotted = f"{prefix}{f.name}"
        if "section" in f.metadata:
            yield from keys(f.metadata["section"], dotted + ".")
            continue
        meta = f.metadata
        yield Key(dotted, _kinds(hints[f.name]), meta["help"], meta["range"], meta["open"])


def defaults(schema: type) -> dict[str, Any]:
    """The schema's defaults as a nested dict, keys in declaration order."""
    return dataclasses.asdict(schema())


def describe(schema: type) -> list[tuple[str, str, Any]]:
    """(dotted key, help, default) for every key: the reference a user reads."""
    flat = defaults(schema)
    out = []
    for leaf in keys(schema):
        value: Any = flat
        for part in leaf.dotted.split("."):
            value = value[part]
        out.append((leaf.dotted, leaf.help, value))
    return out


def _open_keys(schema: type) -> set[str]:
    return {leaf.dotted for leaf in keys(schema) if leaf.open}


def merge(
    schema: type,
    base: dict[str, Any],
    update: Mapping[str, Any],
    where: str,
    *,
    dotted: str | None = None,
) -> None:
    """Merge ``update`` into ``base`` (a config of ``schema``): sections merge key by key,
    every other value (lists, free-form mappings) is replaced; an unknown key is an error that
    names it, suggests the closest known one and lists the keys allowed there. ``dotted``: the
    update is that one setting (``--set small_options.x=1``); where its path goes on past a
    free-form mapping, the mapping gains the key instead of being replaced, so two such
    settings both hold (``--set small_options={...}`` still replaces it)."""
    depth = len(dotted.split(".")) if dotted else 0
    _merge(base, update, where, "", _open_keys(schema), depth)


def _merge_free(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for name, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(name), dict):
            _merge_free(base[name], value)
        else:
            base[name] = copy.deepcopy(value)


def _merge(
    base: dict[str, Any],
    update: Mapping[str, Any],
    where: str,
    prefix: str,
    free: set[str],
    depth: int = 0,
) -> None:
    for name, value in update.items():
        dotted = f"{prefix}{name}"
        if name not in base:
            close = difflib.get_close_matches(str(name), list(base), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{where}: unknown key '{dotted}'{hint}; allowed here: {', '.join(sorted(base))}"
            )
        if isinstance(base[name], dict) and dotted not in free:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{where}: '{dotted}' must be a mapping with keys "
                    f"{', '.join(sorted(base[name]))}; got {value!r:.60}"
                )
            _merge(base[name], value, where, dotted + ".", free, depth)
        elif depth > dotted.count(".") + 1 and isinstance(base[name], dict):
            _merge_free(base[name], value)  # the setting names a key inside this mapping
        else:
            base[name] = copy.deepcopy(value)


def type_names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_NAMES.get(k.__name__, k.__name__) for k in kinds)


def check(schema: type, config: Mapping[str, Any], where: str) -> None:
    """Every key has its type (true/false is not a number) and lies in its range."""
    for leaf in keys(schema):
        value: Any = config
        for part in leaf.dotted.split("."):
            value = value[part]
        kinds = leaf.kinds
        if kinds is not None and (
            (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds)
        ):
            raise ConfigError(
                f"{where}: '{leaf.dotted}' must be {type_names(kinds)}, got {value!r:.60}"
            )
        if leaf.range is not None and value is not None:
            low, high = leaf.range
            if not low <= value <= high:
                raise ConfigError(
                    f"{where}: '{leaf.dotted}' must be between {low} and {high}, got {value!r}"
                )


def parse_value(raw: str) -> Any:
    """A value given as text (``--set``, an environment variable), read as YAML: ``50`` is a
    number, ``[a, b]`` a list, ``null`` null; text YAML cannot read stays text."""
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """``("data.limit", 50)`` -> ``{"data": {"limit": 50}}``."""
    out: dict[str, Any] = {}
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def env_overrides(prefix: str, environ: Mapping[str, str] | None = None) -> list[tuple[str, dict]]:
    """``(variable, update)`` for each ``<prefix>__SECTION__KEY=value`` in the environment
    (sorted by name), keys lower-cased, values read as YAML."""
    environ = os.environ if environ is None else environ
    start = f"{prefix}__"
    out = []
    for name in sorted(environ):
        if name.startswith(start) and len(name) > len(start):
            dotted = ".".join(part.lower() for part in name[len(start) :].split("__"))
            out.append((f"${name}", nested(dotted, parse_value(environ[name]))))
    return out


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is refused: plain YAML
    keeps the last one silently, so a value someone edited may not be the one in force."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<:`` merges are not repeats
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, line, seen[key])
                except TypeError:  # an unhashable key: SafeLoader refuses it on its own
                    continue
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Any) -> Mapping[str, Any]:
    """A config file's top-level mapping (an empty file is no settings); a key given twice in
    one mapping is a ConfigError naming the file and both lines."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{path}:{dup.line}: duplicate key '{dup.key}' (first set on line {dup.first}); "
            "give each key once"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data
