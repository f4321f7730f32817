"""WMT general-task test sets with every submitted system's output, in the official layout.

The layout is the one of the ``wmt-conference/wmt2x-news-systems`` repositories::

    txt/sources/<pair>.txt                  source, one segment per line
    txt/references/<pair>.<ref>.txt         human reference(s): refA, refB, ...
    txt/system-outputs/<pair>/<System>.txt  one file per system, line-aligned with the source
    txt/documents/<pair>.docs               "<domain>\\t<doc_id>" per line
    txt/metadata/<pair>.jsonl               {"domain": ..., "docid": ...} per line (fallback)

It is read from a local folder (a clone, or ``$ROUTELMT_DATA``) or downloaded file by file on
demand into the cache, which then mirrors the same layout and works offline.

Segment ids are ``<name>/<pair>/<i>`` with ``i`` the 0-based index of the real segment (the
contamination canary on line 1 is skipped); ``source_id`` hashes the source text so the same
English paragraph shares one group across pairs, and splits never leak it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from routelmt.datasets.download import DownloadError, NotFoundError, fetch_file
from routelmt.errors import ConfigError, InputError
from routelmt.records import Segment, Translation
from routelmt.storage import atomic_open, cache_dir, default_wmt_root

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/wmt-conference/wmt24-news-systems/main"
"""Where files are downloaded from when no local copy is found."""

CANARY_PREFIX = "CANARY"
CANARY_DOMAIN = "canary"


class NoListingError(ConfigError):
    """A remote folder cannot be listed (no listing URL); files can still be fetched by name."""


_RAW_GITHUB = re.compile(r"^https://raw\.githubusercontent\.com/([^/]+)/([^/]+)/([^/]+)/?$")


def github_listing_url(base_url: str) -> str | None:
    """The GitHub contents-API equivalent of a raw.githubusercontent base URL (folders can only
    be listed through the API); None for any other host."""
    match = _RAW_GITHUB.match(base_url)
    if not match:
        return None
    owner, repo, ref = match.groups()
    return f"https://api.github.com/repos/{owner}/{repo}/contents/{{path}}?ref={ref}"


def source_id(name: str, text: str) -> str:
    """Group key of a source text: equal across pairs that share the same source."""
    return f"{name}/src/" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def first_sentences(sources: list[str], min_words: int = 8, max_words: int = 30) -> list[str]:
    """The first sentence of each paragraph with ``min_words`` to ``max_words`` words, once
    each: short requests as a chat or UI translation service sees them, from WMT24's sources."""
    firsts = [re.split(r"(?<=[.!?])\s+", text.strip())[0] for text in sources]
    return [t for t in dict.fromkeys(firsts) if min_words <= len(t.split()) <= max_words]


def _split_lines(text: str) -> list[str]:
    # Split on "\n" only: str.splitlines() also breaks on U+2028, U+0085, form feeds, ...
    # which would silently misalign files that ``wc -l`` and the WMT tools see as aligned.
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class WMTDataset:
    """One WMT test set (e.g. WMT24): its pairs, sources, references, documents and systems.

    ``root``: a local folder holding ``txt/`` (or the ``txt`` folder itself). When None, the
    default WMT24 folder (``$ROUTELMT_DATA`` or ``../shared/data/wmt24``) is used if present,
    else files are downloaded from ``base_url`` into ``cache`` (default
    ``storage.cache_dir("wmt", name)``); ``base_url=None`` forbids downloading.
    ``list_url``: a folder-listing URL template with ``{path}`` (GitHub contents-API JSON);
    derived automatically for raw.githubusercontent.com base URLs.
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        name: str = "wmt24",
        base_url: str | None = DEFAULT_BASE_URL,
        list_url: str | None = None,
        cache: Path | str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/") if base_url else None
        self.list_url = list_url or (github_listing_url(self.base_url) if self.base_url else None)
        self._fetch_options = {"timeout": timeout, "retries": retries, "backoff": backoff}
        self._lines: dict[str, list[str]] = {}
        self._listings: dict[str, list[str]] = {}
        if root is None and name == "wmt24":
            root = default_wmt_root()
        if root is not None:
            self.remote = False
            self.root = Path(root)
            txt = self.root if (self.root / "sources").is_dir() else self.root / "txt"
            if not (txt / "sources").is_dir():
                raise ConfigError(
                    f"{self.root} is not a WMT system-outputs folder: expected "
                    f"{self.root / 'txt' / 'sources'}/<pair>.txt (a clone of "
                    "wmt-conference/wmt24-news-systems, or its txt/ folder)"
                )
            self.txt = txt
        elif self.base_url:
            self.remote = True
            self.root = Path(cache) if cache is not None else cache_dir("wmt", name)
            self.txt = self.root / "txt"
        else:
            raise ConfigError(
                f"no local {name} data found and downloading is off: pass root= (a clone of the "
                "WMT system-outputs repository), set $ROUTELMT_DATA, or give a base_url"
            )

    def __repr__(self) -> str:
        where = f"{self.base_url} -> {self.root}" if self.remote else str(self.root)
        return f"WMTDataset({self.name!r}, {where})"

    # -- files ------------------------------------------------------------------------------

    def _where(self, rel: str) -> str:
        """How a file is named in error messages: its URL when it came from the network."""
        if self.remote:
            return f"{self.base_url}/txt/{rel}"
        return str(self.txt / rel)

    def _file(self, rel: str) -> Path | None:
        """Local path of ``txt/<rel>``, downloading it first in remote mode; None if absent."""
        path = self.txt / rel
        if path.is_file():
            return path
        if not self.remote:
            return None
        try:
            return fetch_file(f"{self.base_url}/txt/{rel}", path, **self._fetch_options)
        except NotFoundError:
            return None

    def _read(self, rel: str) -> list[str] | None:
        if rel not in self._lines:
            path = self._file(rel)
            if path is None:
                return None
            data = path.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = data[: exc.start].count(b"\n") + 1
                raise InputError(
                    f"not valid UTF-8 (byte {exc.start})", path=self._where(rel), line=line
                ) from None
            self._lines[rel] = _split_lines(text.removeprefix("\ufeff"))
        return self._lines[rel]

    def _listing(self, folder: str) -> list[str]:
        """File names in ``txt/<folder>``: a directory listing, or the (cached) remote one."""
        if folder in self._listings:
            return self._listings[folder]
        if not self.remote:
            path = self.txt / folder
            names = sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []
        else:
            names = self._remote_listing(folder)
        self._listings[folder] = names
        return names

    def _remote_listing(self, folder: str) -> list[str]:
        cached = self.root / ".listing" / (folder.replace("/", "__") + ".json")
        if not cached.is_file():
            if not self.list_url:
                raise NoListingError(
                    f"cannot list {self.base_url}/txt/{folder}: plain HTTP has no folder listing; "
                    "give list_url= (a GitHub contents-API style URL with {path}) or a local root"
                )
            url = self.list_url.replace("{path}", f"txt/{folder}")
            try:
                accept = {"Accept": "application/json"}
                fetch_file(url, cached, headers=accept, **self._fetch_options)
            except NotFoundError:
                with atomic_open(cached) as handle:
                    handle.write("[]\n")
        try:
            entries = json.loads(cached.read_text(encoding="utf-8"))
            names = sorted(e["name"] for e in entries if e.get("type", "file") == "file")
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError):
            cached.unlink(missing_ok=True)
            raise DownloadError(
                f"the folder listing of txt/{folder} is not a JSON list of "
                '{"name": ..., "type": "file"} objects (GitHub contents-API format)',
                url=self.list_url.replace("{path}", f"txt/{folder}") if self.list_url else "",
            ) from None
        return names

    # -- listing ----------------------------------------------------------------------------

    def pairs(self) -> list[str]:
        """Language pairs with a source file, e.g. ``["en-de", "en-es", ...]``."""
        names = self._listing("sources")
        return sorted(n.removesuffix(".txt") for n in names if n.endswith(".txt"))

    def references(self, pair: str) -> list[str]:
        """Reference names for a pair, e.g. ``["refA", "refB"]``."""
        self._check_pair(pair)
        prefix = f"{pair}."
        return sorted(
            n[len(prefix) : -len(".txt")]
            for n in self._listing("references")
            if n.startswith(prefix) and n.endswith(".txt")
        )

    def systems(self, pair: str) -> list[str]:
        """Every system file for the pair, broken ones included (see ``valid_systems``)."""
        self._check_pair(pair)
        names = self._listing(f"system-outputs/{pair}")
        return sorted((n.removesuffix(".txt") for n in names if n.endswith(".txt")), key=str.lower)

    def problems(self, pair: str) -> dict[str, str]:
        """System -> why its output cannot be used (empty, misaligned, all blank)."""
        found: dict[str, str] = {}
        for system in self.systems(pair):
            try:
                self._system_lines(pair, system)
            except InputError as exc:
                found[system] = str(exc)
        return found

    def valid_systems(self, pair: str) -> list[str]:
        """Systems whose output is line-aligned with the source and not entirely blank (remote:
        this downloads every system file of the pair)."""
        bad = self.problems(pair)
        for system, reason in bad.items():
            log.warning("skipping %s system %s: %s", pair, system, reason)
        return [s for s in self.systems(pair) if s not in bad]

    def _check_pair(self, pair: str) -> None:
        try:
            known = self.pairs()
        except NoListingError:  # remote without a listing: fall back to trying the file
            rel = f"sources/{pair}.txt"
            if self._read(rel) is None:
                where = self._where(rel)
                raise ConfigError(
                    f"unknown {self.name} pair '{pair}': no file at {where}"
                ) from None
            return
        if pair not in known:
            raise ConfigError(
                f"unknown {self.name} pair '{pair}'; known: {', '.join(known) or '(none)'} "
                f"(in {self.root if not self.remote else self.base_url})"
            )

    # -- content ----------------------------------------------------------------------------

    def _source_lines(self, pair: str) -> list[str]:
        self._check_pair(pair)
        lines = self._read(f"sources/{pair}.txt")
        if lines is None:
            raise InputError("source file not found", path=self._where(f"sources/{pair}.txt"))
        if not lines:
            raise InputError("source file is empty", path=self._where(f"sources/{pair}.txt"))
        return lines

    def _documents(self, pair: str, expected: int) -> list[tuple[str, str]] | None:
        """(domain, doc_id) per line from ``.docs``, else ``metadata/*.jsonl``, else None."""
        rel = f"documents/{pair}.docs"
        lines = self._read(rel)
        rows: list[tuple[str, str]] = []
        if lines is not None:
            for lineno, line in enumerate(lines, start=1):
                domain, tab, doc_id = line.partition("\t")
                if not tab or not domain or not doc_id:
                    raise InputError(
                        f"expected '<domain>\\t<doc_id>', got {line!r:.60}",
                        path=self._where(rel),
                        line=lineno,
                    )
                rows.append((domain, doc_id))
        else:
            rel = f"metadata/{pair}.jsonl"
            lines = self._read(rel)
            if lines is None:
                return None
            for lineno, line in enumerate(lines, start=1):
                try:
                    obj = json.loads(line)
                    domain, doc_id = obj["domain"], obj.get("docid", obj.get("doc_id"))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise InputError(
                        'expected a JSON object with "domain" and "docid"',
                        path=self._where(rel),
                        line=lineno,
                    ) from None
                rows.append((str(domain), str(doc_id)))
        if len(rows) != expected:
            raise InputError(
                f"has {len(rows)} lines but the source has {expected}; expected one per segment",
                path=self._where(rel),
            )
        return rows

    def _offset(self, pair: str, sources: list[str], docs: list[tuple[str, str]] | None) -> int:
        """1 when line 1 is the contamination canary (source and documents must agree), else 0."""
        is_canary = sources[0].startswith(CANARY_PREFIX)
        if docs is not None and (docs[0][0] == CANARY_DOMAIN) != is_canary:
            raise InputError(
                f"line 1 of the source {'is' if is_canary else 'is not'} a canary "
                f"({sources[0]!r:.50}) but its domain is {docs[0][0]!r}; files are misaligned",
                path=self._where(f"documents/{pair}.docs"),
                line=1,
            )
        return 1 if is_canary else 0

    def _aligned(self, rel: str, sources: list[str], what: str) -> list[str]:
        lines = self._read(rel)
        if lines is None:
            raise InputError(f"{what} file not found", path=self._where(rel))
        if not lines:
            raise InputError(
                f"{what} file is empty; expected {len(sources)} lines aligned with the source",
                path=self._where(rel),
            )
        if len(lines) != len(sources):
            raise InputError(
                f"{what} has {len(lines)} lines but the source has {len(sources)}; "
                "it must be line-aligned with the source",
                path=self._where(rel),
            )
        return lines

    def _system_lines(self, pair: str, system: str) -> list[str]:
        """The system's real-segment lines, validated."""
        sources = self._source_lines(pair)
        rel = f"system-outputs/{pair}/{system}.txt"
        try:
            known: list[str] | None = self.systems(pair)
        except NoListingError:
            known = None
        if (known is not None and system not in known) or self._file(rel) is None:
            listed = ", ".join(known) if known else "(cannot list)"
            raise ConfigError(f"unknown system '{system}' for {self.name} {pair}; known: {listed}")
        lines = self._aligned(rel, sources, "system output")
        offset = self._offset(pair, sources, self._documents(pair, len(sources)))
        real = lines[offset:]
        if not any(line.strip() for line in real):
            raise InputError(
                f"all {len(real)} segments are empty: a placeholder or broken submission, "
                "not a translation",
                path=self._where(rel),
            )
        return real

    def segments(self, pair: str, reference: str | None = "refA") -> list[Segment]:
        """The pair's real segments (canary skipped), with a reference unless ``reference=None``."""
        sources = self._source_lines(pair)
        docs = self._documents(pair, len(sources))
        offset = self._offset(pair, sources, docs)
        refs: list[str] | None = None
        if reference is not None:
            rel = f"references/{pair}.{reference}.txt"
            if self._read(rel) is None:
                try:
                    known = ", ".join(self.references(pair)) or "(none)"
                except NoListingError:
                    known = "(cannot list)"
                raise InputError(
                    f"reference '{reference}' not found for {pair}; available: {known} "
                    "(pass reference=None to load sources only)",
                    path=self._where(rel),
                )
            refs = self._aligned(rel, sources, "reference")
        out = []
        for i, line in enumerate(range(offset, len(sources))):
            domain, doc_id = docs[line] if docs is not None else (None, None)
            out.append(
                Segment(
                    id=self.segment_id(pair, i),
                    direction=pair,
                    source=sources[line],
                    reference=refs[line] if refs is not None else None,
                    domain=domain,
                    doc_id=doc_id,
                    source_id=source_id(self.name, sources[line]),
                )
            )
        return out

    def segment_id(self, pair: str, index: int) -> str:
        return f"{self.name}/{pair}/{index}"

    def system_outputs(self, pair: str, system: str) -> dict[str, str]:
        """Segment id -> the system's text; empty strings are kept (the system produced nothing)."""
        lines = self._system_lines(pair, system)
        return {self.segment_id(pair, i): text for i, text in enumerate(lines)}

    def translations(self, pair: str, system: str) -> list[Translation]:
        return [
            Translation(segment_id=sid, system=system, text=text)
            for sid, text in self.system_outputs(pair, system).items()
        ]
