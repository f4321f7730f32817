"""Recorded outputs served as a translator: the large model of offline benchmarks.

No model larger than a few hundred million parameters runs here, so experiments replay what a
real system (e.g. a WMT24 submission such as GPT-4) produced for the same segments, looked up by
segment id. Asking for a segment it never saw is an error, never a silent empty string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from routelmt.backends.base import BACKENDS, Translator
from routelmt.datasets.wmt import WMTDataset
from routelmt.errors import BackendError, ConfigError
from routelmt.records import Segment, Translation, read_records


@BACKENDS.register
class ReplayTranslator(Translator):
    """Returns a recorded system's output by segment id.

    Build it from a mapping (``outputs``), or from a WMT dataset: ``dataset`` is a WMTDataset,
    a local root folder, or None for the default WMT24 data; ``pairs`` limits which pairs are
    loaded (default: every pair that has the system).
    """

    kind = "replay"

    def __init__(
        self,
        system: str,
        outputs: Mapping[str, str] | None = None,
        *,
        dataset: WMTDataset | str | Path | None = None,
        pairs: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.system = system
        self.name = name or system
        if outputs is None:
            outputs = self._load_wmt(system, dataset, pairs)
        elif dataset is not None or pairs is not None:
            raise ConfigError("replay: give either outputs or dataset/pairs, not both")
        if not outputs:
            raise ConfigError(f"replay system '{system}' has no recorded outputs")
        self._outputs = dict(outputs)

    @staticmethod
    def _load_wmt(
        system: str, dataset: WMTDataset | str | Path | None, pairs: str | Sequence[str] | None
    ) -> dict[str, str]:
        data = dataset if isinstance(dataset, WMTDataset) else WMTDataset(dataset)
        if pairs is None:
            chosen = [p for p in data.pairs() if system in data.systems(p)]
            if not chosen:
                raise ConfigError(f"replay: no {data.name} pair has a system named '{system}'")
        else:
            chosen = [pairs] if isinstance(pairs, str) else list(pairs)
        outputs: dict[str, str] = {}
        for pair in chosen:
            outputs.update(data.system_outputs(pair, system))
        return outputs

    @classmethod
    def from_wmt(
        cls,
        dataset: WMTDataset,
        system: str,
        pairs: str | Sequence[str] | None = None,
        *,
        name: str | None = None,
    ) -> ReplayTranslator:
        return cls(system, dataset=dataset, pairs=pairs, name=name)

    @classmethod
    def from_translations(
        cls, translations: Iterable[Translation] | str | Path, system: str | None = None
    ) -> ReplayTranslator:
        """From Translation records (or a JSONL file of them); ``system`` picks one of several."""
        if isinstance(translations, (str, Path)):
            translations = read_records(translations, Translation)
        records = list(translations)
        systems = sorted({t.system for t in records})
        if system is None:
            if len(systems) != 1:
                raise ConfigError(
                    f"replay: the translations hold {len(systems)} systems "
                    f"({', '.join(systems) or 'none'}); pick one with system="
                )
            system = systems[0]
        elif system not in systems:
            raise ConfigError(
                f"replay: no translations by '{system}'; present: {', '.join(systems) or 'none'}"
            )
        return cls(system, {t.segment_id: t.text for t in records if t.system == system})

    def __len__(self) -> int:
        return len(self._outputs)

    def __contains__(self, segment_id: object) -> bool:
        return segment_id in self._outputs

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        missing = [s.id for s in segments if s.id not in self._outputs]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            example = next(iter(self._outputs))
            raise BackendError(
                f"replay system '{self.name}' has no recorded output for segment {shown}{more} "
                f"(it holds {len(self._outputs)} segments, ids like {example!r})"
            )
        return [self._outputs[s.id] for s in segments]


class ReplayBySource(Translator):
    """A recorded WMT system that also answers by source text, not only by segment id.

    A client of the service sends text, not WMT ids; with a replay backend (the embedded
    default where no live model is installed) a WMT24 source sentence is then answered with
    the recorded translation of that sentence. Any other text is a BackendError that says so.
    """

    def __init__(self, replay: Translator, segments: list[Segment]) -> None:
        self.replay = replay
        self.name = replay.name
        self._by_source = {(s.direction, s.source.strip()): s.id for s in segments}
        self._pairs = sorted({s.direction for s in segments})

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        mapped = []
        for s in segments:
            if s.id not in self.replay:  # type: ignore[operator]
                sid = self._by_source.get((s.direction, s.source.strip()))
                if sid is None:
                    raise BackendError(
                        f"replay system '{self.name}' has no recorded translation of segment "
                        f"{s.id!r}: it knows only the WMT24 sources of {', '.join(self._pairs)} "
                        "(send one of them, or serve a live model such as hf:gemma3-270m)"
                    )
                s = dataclasses.replace(s, id=sid)
            mapped.append(s)
        return self.replay.translate(mapped)
