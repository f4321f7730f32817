"""The end-to-end benchmark (``routelmt bench``) as cached, resumable stages.

data -> translate (small, every large) -> score -> routers (out-of-fold scores, one stage per
router and large system) -> evaluate -> report. Each stage writes into ``<output>/<stage>/`` and
records a ``stage.json`` whose ``hash`` covers its settings and the hashes of the stages it reads,
so a rerun skips a finished stage whose inputs are unchanged and recomputes one whose inputs
changed. Outputs are written atomically; translation appends one fsynced batch at a time, so an
interrupted run resumes per segment (``translate_resumable``, shared with ``routelmt translate``).

Configuration: ``DEFAULTS`` is the schema. Config files are merged in order, later files over
earlier ones, then ``--set key=value`` flags in order, then ``--full`` (no per-pair limit).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from routelmt.backends.base import Translator
from routelmt.backends.resolve import check_spec, parse_spec
from routelmt.errors import ConfigError, InputError
from routelmt.executors import DEFAULTS as EXECUTOR_DEFAULTS
from routelmt.executors import Executor, check_settings, make_executor, translate_batches
from routelmt.progress import bar
from routelmt.records import ScoredExample, Segment, Translation, read_records, write_records
from routelmt.storage import read_json, stable_hash, write_json

log = logging.getLogger(__name__)

PIPELINE_FORMAT = 1  # bump when a stage's output layout changes, to invalidate old stages
STAGE_FILE = "stage.json"

DEFAULTS: dict[str, Any] = {
    "name": "bench",
    "output": None,  # null: runs/<name>
    "data": {"root": None, "pairs": ["en-es"], "limit": None, "reference": "refA"},
    "small": "replay:Phi-3-Medium",
    "small_options": {},
    "large": ["replay:GPT-4"],
    "large_options": {},
    "translate": {"batch_size": 16},
    # where translation runs: local, or {kind: ray, address, workers, threads} (executors/)
    "executor": dict(EXECUTOR_DEFAULTS),
    "metric": {"name": "chrf", "args": {}},
    "routers": ["gain-oracle", "quality-oracle", "random", "length"],
    "router_args": {},
    "evaluation": {
        "budgets": [0.1, 0.2, 0.3, 0.4, 0.5],
        "folds": 5,
        "cv": "kfold",
        "baselines": ["length", "entropy"],
        "seed": 0,
        "bootstrap": 1000,
        "severe_delta": 10.0,
        "plots": True,
    },
}

_NULL = type(None)
_NUMBER = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "output": (str, _NULL),
    "data.root": (str, _NULL),
    "data.pairs": (list, str),
    "data.limit": (int, _NULL),
    "data.reference": (str, _NULL),
    "small": (str,),
    "small_options": (dict,),
    "large": (str, list),
    "large_options": (dict,),
    "translate.batch_size": (int,),
    "executor.kind": (str,),
    "executor.address": (str, _NULL),
    "executor.workers": (int,),
    "executor.threads": (int,),
    "metric.name": (str,),
    "metric.args": (dict,),
    "routers": (list,),
    "router_args": (dict,),
    "evaluation.budgets": (list,),
    "evaluation.folds": (int,),
    "evaluation.cv": (str,),
    "evaluation.baselines": (list,),
    "evaluation.seed": (int,),
    "evaluation.bootstrap": (int,),
    "evaluation.severe_delta": _NUMBER,
    "evaluation.plots": (bool,),
}
_OPEN = {"small_options", "large_options", "metric.args", "router_args"}  # free-form maps
IN_MODEL_ROUTERS = frozenset({"routelmt", "routelmt-q", "entropy", "routelmt-lora"})


# -- configuration ---------------------------------------------------------------------------


def _unknown_key(dotted: str, allowed: Sequence[str], where: str) -> ConfigError:
    key = dotted.rpartition(".")[2]
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(
        f"{where}: unknown key '{dotted}'{hint}; allowed here: {', '.join(sorted(allowed))}"
    )


def _merge(base: dict[str, Any], update: Mapping[str, Any], where: str, prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise _unknown_key(dotted, list(base), where)
        if isinstance(base[key], dict) and dotted not in _OPEN:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{where}: '{dotted}' must be a mapping with keys "
                    f"{', '.join(sorted(base[key]))}; got {value!r:.60}"
                )
            _merge(base[key], value, where, dotted + ".")
        else:
            base[key] = copy.deepcopy(value)


def _type_names(kinds: tuple[type, ...]) -> str:
    names = {"NoneType": "null", "str": "a string", "int": "an integer", "float": "a number"}
    names |= {"list": "a list", "dict": "a mapping", "bool": "true/false"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _check_types(config: dict[str, Any], where: str) -> None:
    for dotted, kinds in _TYPES.items():
        value: Any = config
        for part in dotted.split("."):
            value = value[part]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ConfigError(
                f"{where}: '{dotted}' must be {_type_names(kinds)}, got {value!r:.60}"
            )

    def strings(dotted: str, values: Any) -> None:
        for item in values:
            if not isinstance(item, str) or not item:
                raise ConfigError(f"{where}: '{dotted}' must list strings, got {item!r:.60}")

    if isinstance(config["large"], list):
        strings("large", config["large"])
        if not config["large"]:
            raise ConfigError(f"{where}: 'large' lists no system")
    if isinstance(config["data"]["pairs"], list):
        strings("data.pairs", config["data"]["pairs"])
    strings("routers", config["routers"])
    if not config["routers"]:
        raise ConfigError(f"{where}: 'routers' lists no router")
    if len(set(config["routers"])) != len(config["routers"]):
        raise ConfigError(f"{where}: 'routers' names a router twice: {config['routers']}")
    limit = config["data"]["limit"]
    if limit is not None and limit <= 0:
        raise ConfigError(f"{where}: 'data.limit' must be a positive integer or null, got {limit}")
    if config["translate"]["batch_size"] <= 0:
        raise ConfigError(f"{where}: 'translate.batch_size' must be positive")
    check_settings(config["executor"], where)
    if config["evaluation"]["folds"] < 2:
        raise ConfigError(f"{where}: 'evaluation.folds' must be at least 2")
    from routelmt.splits import CV_SCHEMES

    if config["evaluation"]["cv"] not in CV_SCHEMES:
        raise ConfigError(
            f"{where}: 'evaluation.cv' must be one of {', '.join(CV_SCHEMES)}, "
            f"got {config['evaluation']['cv']!r}"
        )
    strings("evaluation.baselines", config["evaluation"]["baselines"])
    pairs = config["data"]["pairs"]
    if config["evaluation"]["cv"] == "lodo" and isinstance(pairs, list) and len(set(pairs)) < 2:
        raise ConfigError(
            f"{where}: 'evaluation.cv: lodo' (leave one direction out) needs at least two "
            f"pairs in 'data.pairs', got {pairs}"
        )
    if config["evaluation"]["bootstrap"] < 0:
        raise ConfigError(f"{where}: 'evaluation.bootstrap' must be >= 0")
    budgets = config["evaluation"]["budgets"]
    if not budgets:
        raise ConfigError(f"{where}: 'evaluation.budgets' lists no budget")
    for p in budgets:
        if isinstance(p, bool) or not isinstance(p, _NUMBER) or not 0.0 < p < 1.0:
            raise ConfigError(
                f"{where}: 'evaluation.budgets' holds {p!r}; each budget is a share in (0, 1)"
            )
    for router, args in config["router_args"].items():
        if router not in config["routers"]:
            raise ConfigError(
                f"{where}: 'router_args' sets '{router}', which is not in 'routers' "
                f"({', '.join(config['routers'])})"
            )
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: 'router_args.{router}' must be a mapping")


def parse_set(item: str) -> dict[str, Any]:
    """``data.limit=50`` -> {"data": {"limit": 50}}; the value is read as YAML (lists work)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: expected KEY=VALUE (e.g. data.limit=50), got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def shipped_configs() -> dict[str, Path]:
    """The configs that ship inside the package (``routelmt/configs``, also ``configs/`` in the
    repo): name -> path, so ``routelmt bench default`` works from a wheel install."""
    folder = Path(__file__).resolve().parent / "configs"
    found = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    return {p.stem: p for p in found if p.stem != "serve"}  # serve.yaml configures the server


def _resolve_config(path: Path) -> Path:
    """A file path, or the bare name of a shipped config (``default``, ``in-model``, ...)."""
    if path.is_file() or path.suffix or len(path.parts) != 1:
        return path
    return shipped_configs().get(str(path), path)


def _read_yaml(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        shipped = ", ".join(shipped_configs())
        hint = f" (or a shipped config by name: {shipped})" if shipped else ""
        raise ConfigError(f"config file not found: {path}{hint}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def load_bench_config(
    paths: Sequence[str | os.PathLike[str]],
    sets: Sequence[str] = (),
    *,
    full: bool = False,
    output: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Defaults <- each file in order <- each ``--set`` in order <- ``--full`` / ``--output``."""
    config = copy.deepcopy(DEFAULTS)
    sources = []
    for given in paths:
        path = _resolve_config(Path(given))
        _merge(config, _read_yaml(path), str(path))
        sources.append(str(path))
    for item in sets:
        _merge(config, parse_set(item), f"--set {item}")
    if full:
        config["data"]["limit"] = None
    if output is not None:
        config["output"] = str(output)
    where = " + ".join(sources + (["--set flags"] if sets else [])) or "defaults"
    _check_types(config, where)
    if isinstance(config["large"], str):
        config["large"] = [config["large"]]
    folders: dict[str, str] = {}
    for spec in [config["small"], *config["large"]]:
        if slug(spec) in folders:
            raise ConfigError(
                f"{where}: '{spec}' and '{folders[slug(spec)]}' name the same system; "
                "list each system once (small is not also a large system)"
            )
        folders[slug(spec)] = spec
    return config


# -- resumable translation -------------------------------------------------------------------


def read_partial_translations(path: str | os.PathLike[str]) -> list[Translation]:
    """Translations already in an append-only output, repairing what a crash can leave behind.

    A last line without its newline (a write cut short), or a last line that is not JSON (e.g.
    zeros after a power loss), is dropped and the file truncated before it; a bad line anywhere
    else is real corruption and an error naming the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    keep = len(data)
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping a torn last line (%d bytes)", path, len(data) - keep)
    lines = data[:keep].split(b"\n")[:-1] if keep else []
    records: list[Translation] = []
    offsets = 0
    for index, raw in enumerate(lines):
        line_start = offsets
        offsets += len(raw) + 1
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            from routelmt.records import translation_from_dict

            records.append(translation_from_dict(obj, path=str(path), line=index + 1))
        except (ValueError, UnicodeDecodeError, InputError) as exc:
            if index == len(lines) - 1:
                log.warning("%s: dropping an unreadable last line %d", path, index + 1)
                keep = line_start
                break
            raise InputError(
                f"unreadable translation record ({exc}); remove the line or the file to "
                "translate it again",
                path=str(path),
                line=index + 1,
            ) from None
    if keep < len(data):
        os.truncate(path, keep)
    return records


def source_hash(segment: Segment) -> str:
    """What a translation depends on in its segment: the direction and the source text."""
    return stable_hash(segment.direction, segment.source, length=12)


def salvage_translations(
    carried: Path, segments: Sequence[Segment], system: str, path: Path
) -> int:
    """Seed ``path`` with the translations in ``carried`` (an earlier job's output, same system
    and settings) whose segment is still in ``segments`` with the same direction and source;
    returns how many. Unreadable lines are skipped: this only saves work."""
    wanted = {s.id: source_hash(s) for s in segments}
    kept: dict[str, dict[str, Any]] = {}
    with open(carried, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or row.get("system") != system:
                continue
            sid, text = row.get("segment_id"), row.get("text")
            if isinstance(text, str) and sid in wanted and row.get("source_hash") == wanted[sid]:
                kept.setdefault(sid, row)
    write_records(path, kept.values())
    carried.unlink()
    return len(kept)


@dataclass
class TranslateResult:
    """Outputs aligned with the input segments, and what this run did."""

    texts: list[str]
    reused: int
    translated: int
    seconds: float
    tokens: int | None = None

    @property
    def segments_per_second(self) -> float | None:
        return self.translated / self.seconds if self.translated and self.seconds > 0 else None

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.tokens and self.seconds > 0 else None


def _batch_tokens(translator: Translator) -> int | None:
    """Tokens the last ``translate`` call generated, for backends that report them
    (``last_stats.generated_tokens``, as the transformers backend does)."""
    value = getattr(getattr(translator, "last_stats", None), "generated_tokens", None)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


BatchRunner = Callable[[list[list[Segment]]], Iterable[tuple[list[str], int | None]]]


def _translate_here(
    translator: Translator, batches: list[list[Segment]]
) -> Iterator[tuple[list[str], int | None]]:
    for batch in batches:
        yield translator.translate(batch), _batch_tokens(translator)


def translate_resumable(
    translator: Translator,
    segments: Sequence[Segment],
    path: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    desc: str | None = None,
    source_hashes: bool = False,
    run_batches: BatchRunner | None = None,
) -> TranslateResult:
    """Translate what ``path`` does not hold yet, appending each batch durably (flush + fsync).

    Records in ``path`` by another system, or for segments not in ``segments``, are an error:
    the file belongs to a different job. ``source_hashes`` adds each segment's
    ``source_hash`` to its record, so a later job can tell which translations still apply.
    ``run_batches`` translates the batches elsewhere (``executors.translate_batches``: each
    batch's texts and generated tokens, in order); default: ``translator`` in this process.
    """
    path = Path(path)
    if batch_size <= 0:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    ids = {s.id for s in segments}
    if len(ids) != len(segments):
        raise InputError("duplicate segment ids in the input")
    done: dict[str, str] = {}
    for record in read_partial_translations(path):
        if record.system != translator.name:
            raise InputError(
                f"holds translations by '{record.system}', not '{translator.name}'; "
                "write to another output file",
                path=str(path),
            )
        if record.segment_id not in ids:
            raise InputError(
                f"holds a translation of segment '{record.segment_id}', which is not in the "
                "input; write to another output file",
                path=str(path),
            )
        done.setdefault(record.segment_id, record.text)
    todo = [s for s in segments if s.id not in done]
    if done:
        log.info("%s: %d of %d segments already translated", path, len(done), len(segments))
    started = time.perf_counter()
    tokens: int | None = None
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        progress = bar(desc=desc or f"translate {translator.name}", total=len(todo), unit="seg")
        batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
        run = run_batches or (lambda batches: _translate_here(translator, batches))
        try:
            for batch, (texts, batch_tokens) in zip(batches, run(batches)):
                if len(texts) != len(batch):
                    raise InputError(
                        f"backend {translator.name} returned {len(texts)} outputs for "
                        f"{len(batch)} segments"
                    )
                for segment, text in zip(batch, texts):
                    record = {"segment_id": segment.id, "system": translator.name, "text": text}
                    if source_hashes:
                        record["source_hash"] = source_hash(segment)
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                    done[segment.id] = text
                handle.flush()
                os.fsync(handle.fileno())
                progress.update(len(batch))
                if batch_tokens is not None:
                    tokens = (tokens or 0) + batch_tokens
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    progress.set_postfix(tok_s=f"{tokens / elapsed:.1f}")
        finally:
            progress.close()
    return TranslateResult(
        texts=[done[s.id] for s in segments],
        reused=len(segments) - len(todo),
        translated=len(todo),
        seconds=time.perf_counter() - started,
        tokens=tokens,
    )


# -- stages ----------------------------------------------------------------------------------


@dataclass
class StageRecord:
    """One stage of one run: ``status`` is "ran" or "cached"."""

    name: str
    status: str
    seconds: float
    hash: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)


class StageRunner:
    """Runs a stage unless ``<output>/<name>/stage.json`` says it finished with the same hash."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.records: list[StageRecord] = []
        self.hashes: dict[str, str] = {}

    def run(
        self,
        name: str,
        settings: Mapping[str, Any],
        depends: Sequence[str],
        outputs: Sequence[str],
        work: Callable[[Path], dict[str, Any] | None],
        *,
        carry: Sequence[str] = (),
    ) -> StageRecord:
        """``carry``: outputs kept as ``carried-<name>`` when only upstream stages changed (the
        stage's own settings are the same), for work that can salvage part of them."""
        directory = self.output / name
        upstream = {dep: self.hashes[dep] for dep in depends}
        digest = stable_hash(PIPELINE_FORMAT, name, dict(settings), upstream)
        self.hashes[name] = digest
        stage_file = directory / STAGE_FILE
        previous = _read_stage(stage_file)
        if (
            previous is not None
            and previous.get("status") == "complete"
            and previous.get("hash") == digest
            and all((directory / out).exists() for out in outputs)
        ):
            log.info("stage %s: cached (%s)", name, digest)
            record = StageRecord(name, "cached", 0.0, digest, directory, previous.get("info", {}))
            self.records.append(record)
            return record
        if previous is not None and previous.get("hash") != digest:
            log.info("stage %s: inputs changed, recomputing", name)
            same = _canonical(previous.get("settings")) == _canonical(dict(settings))
            keep = set()
            for out in carry if same else ():
                if (directory / out).exists():
                    os.replace(directory / out, directory / f"carried-{out}")
                if (directory / f"carried-{out}").exists():
                    keep.add(f"carried-{out}")
            for child in directory.iterdir():  # ours: the folder holds a stage.json
                if child.name in keep:
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif previous is not None and previous.get("status") != "complete":
            log.info("stage %s: resuming an interrupted run", name)
        started_at = _now()
        state = {
            "stage": name,
            "hash": digest,
            "status": "running",
            "settings": dict(settings),
            "depends": upstream,
            "outputs": list(outputs),
            "started": started_at,
        }
        write_json(stage_file, state)
        started = time.perf_counter()
        info = work(directory) or {}
        seconds = time.perf_counter() - started
        missing = [out for out in outputs if not (directory / out).exists()]
        if missing:  # a programming error, never a user one
            raise RuntimeError(f"stage {name} did not write {', '.join(missing)}")
        state |= {"status": "complete", "finished": _now(), "seconds": seconds, "info": info}
        write_json(stage_file, state)
        log.info("stage %s: done in %.1fs", name, seconds)
        record = StageRecord(name, "ran", seconds, digest, directory, info)
        self.records.append(record)
        return record


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _read_stage(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except InputError:
        return {}  # unreadable: treat as unfinished work of unknown inputs
    return data if isinstance(data, dict) else {}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def slug(spec: str) -> str:
    """A folder name for a system spec: ``hf:gemma3-270m`` -> ``hf-gemma3-270m``, ``replay:GPT-4``
    -> ``GPT-4``; specs with other odd characters (URLs, paths) get a short hash."""
    kind, sep, argument = spec.partition(":")
    plain = (argument if sep and kind == "replay" else spec).replace(":", "-")
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", plain).strip("-.") or "system"
    return text if text == plain else f"{text}-{stable_hash(spec, length=6)}"


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class BenchResult:
    """Everything a run produced; ``results`` maps each large system to its evaluation."""

    output: Path
    config: dict[str, Any]
    stages: list[StageRecord]
    results: dict[str, dict[str, Any]]
    reports: dict[str, Path]
    seconds: float


def _router_args(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-router settings; in-model routers read the live small model unless told otherwise."""
    args = {name: dict(config["router_args"].get(name, {})) for name in config["routers"]}
    kind, _, model = config["small"].partition(":")
    if kind == "hf" and model:
        for name in config["routers"]:
            if name in IN_MODEL_ROUTERS:
                args[name].setdefault("model", model)
    return args


def _local_txt(dataset: Any) -> Path | None:
    """The local WMT folder whose files may be edited in place; None for downloads (a
    download is fixed by its URL, and its files appear only after the first run)."""
    return None if getattr(dataset, "remote", False) else Path(getattr(dataset, "txt", ""))


def _data_settings(dataset: Any, pairs: list[str], data: Mapping[str, Any]) -> dict[str, Any]:
    files = []
    txt = _local_txt(dataset)
    for pair in pairs if txt is not None else ():
        rels = [f"sources/{pair}.txt", f"references/{pair}.{data['reference']}.txt"]
        rels += [f"documents/{pair}.docs"]
        for rel in rels:
            path = txt / rel
            if path.is_file():
                stat = path.stat()
                files.append([rel, stat.st_size, stat.st_mtime_ns])
    return {
        "root": str(getattr(dataset, "root", "")),
        "url": getattr(dataset, "base_url", None) if txt is None else None,
        "pairs": pairs,
        "limit": data["limit"],
        "reference": data["reference"],
        "files": files,
    }


def _system_settings(spec: str, options: Mapping[str, Any], dataset: Any, pairs: list[str]):
    settings: dict[str, Any] = {"spec": spec, "options": dict(options)}
    system = parse_spec(spec).system
    if spec.endswith(".jsonl") and Path(spec).is_file():
        stat = Path(spec).stat()
        settings["file"] = [str(Path(spec).resolve()), stat.st_size, stat.st_mtime_ns]
    elif system and (txt := _local_txt(dataset)) is not None:
        for pair in pairs:  # recorded WMT outputs may be edited in place: key on their stat
            path = txt / "system-outputs" / pair / f"{system}.txt"
            if path.is_file():
                stat = path.stat()
                settings.setdefault("files", []).append([pair, stat.st_size, stat.st_mtime_ns])
    return settings


def run_bench(
    config: Mapping[str, Any],
    *,
    make_translator: Callable[..., Translator] | None = None,
) -> BenchResult:
    """Run (or resume) every stage of a validated config (``load_bench_config``)."""
    from routelmt.backends.resolve import make_translator as default_make_translator
    from routelmt.datasets.wmt import WMTDataset
    from routelmt.metrics.base import get_metric

    make = make_translator or default_make_translator
    config = copy.deepcopy(dict(config))
    begun = time.perf_counter()
    output = Path(config["output"] or Path("runs") / config["name"])
    config["output"] = str(output)
    data_cfg = config["data"]
    if data_cfg["root"] is not None and not Path(data_cfg["root"]).exists():
        raise ConfigError(f"'data.root': folder not found: {data_cfg['root']}")
    systems = {"small": config["small"]} | {f"large:{spec}": spec for spec in config["large"]}
    for label, spec in systems.items():
        check_spec(spec, label.partition(":")[0])
    from routelmt.routers.base import ROUTERS

    for name in config["routers"]:
        try:
            ROUTERS.get(name)
        except ConfigError as exc:
            raise ConfigError(f"'routers': {exc}") from None
    get_metric(config["metric"]["name"], **config["metric"]["args"])  # fail early on a bad name

    dataset = WMTDataset(data_cfg["root"])
    known = dataset.pairs()
    pairs = known if data_cfg["pairs"] in ("all", ["all"]) else data_cfg["pairs"]
    if isinstance(pairs, str):
        pairs = [p.strip() for p in pairs.split(",") if p.strip()]
    for pair in pairs:
        if pair not in known:
            raise ConfigError(f"'data.pairs': unknown pair '{pair}'; known: {', '.join(known)}")
    with _exclusive(output):
        executor = make_executor(config["executor"])
        try:
            return _run_stages(config, output, dataset, pairs, make, begun, executor)
        finally:
            executor.close()


@contextlib.contextmanager
def _exclusive(output: Path) -> Any:
    """One run per output folder: two runs appending to the same files would interleave."""
    import fcntl

    output.mkdir(parents=True, exist_ok=True)
    with open(output / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another routelmt bench is running on {output}; wait for it or use --output"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_stages(
    config: dict[str, Any],
    output: Path,
    dataset: Any,
    pairs: list[str],
    make: Callable[..., Translator],
    begun: float,
    executor: Executor,
) -> BenchResult:
    from routelmt.crossval import router_scores, too_few_groups
    from routelmt.evaluation import evaluate_routers, write_report
    from routelmt.evaluation.evaluate import SCHEMA as EVALUATION_SCHEMA
    from routelmt.labels import score_pairs
    from routelmt.metrics.base import get_metric
    from routelmt.routers import get_router

    data_cfg = config["data"]
    systems = {"small": config["small"]} | {f"large:{spec}": spec for spec in config["large"]}
    runner = StageRunner(output)

    # data
    def data_stage(directory: Path) -> dict[str, Any]:
        segments: list[Segment] = []
        for pair in pairs:
            pair_segments = dataset.segments(pair, reference=data_cfg["reference"])
            segments.extend(
                pair_segments[: data_cfg["limit"]] if data_cfg["limit"] else pair_segments
            )
        if not segments:
            raise InputError(f"no segments in pairs {', '.join(pairs)}")
        write_records(directory / "segments.jsonl", segments)
        return {"segments": len(segments), "pairs": pairs}

    runner.run("data", _data_settings(dataset, pairs, data_cfg), [], ["segments.jsonl"], data_stage)
    segments = read_records(output / "data" / "segments.jsonl", Segment)

    # translate + score, once per system
    metric_holder: dict[str, Any] = {}

    def metric() -> Any:
        if "metric" not in metric_holder:
            metric_holder["metric"] = get_metric(
                config["metric"]["name"], **config["metric"]["args"]
            )
        return metric_holder["metric"]

    texts: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    qualities: dict[str, list[float]] = {}
    signature: dict[str, str] = {}
    for label, spec in systems.items():
        options = config["small_options"] if label == "small" else config["large_options"]
        key = slug(spec)
        tname = f"translate/{key}"

        def translate_stage(directory: Path, spec: str = spec, options: Any = options):
            translator = make(spec, dataset=dataset, pairs=pairs, **options)
            out = directory / "translations.jsonl"
            carried = directory / "carried-translations.jsonl"
            salvaged = None
            if carried.exists():
                salvaged = salvage_translations(carried, segments, translator.name, out)
                log.info("%s: %d translations still apply to the new data", spec, salvaged)
            try:
                done = translate_resumable(
                    translator,
                    segments,
                    out,
                    batch_size=config["translate"]["batch_size"],
                    source_hashes=True,
                    run_batches=None
                    if parse_spec(spec).recorded  # a lookup: no work worth sending out
                    else translate_batches(
                        executor,
                        functools.partial(make, spec, dataset=dataset, pairs=pairs, **options),
                    ),
                )
            finally:
                translator.close()
            info = {"system": translator.name, "segments": len(segments)}
            if salvaged is not None:
                info["salvaged"] = salvaged
            info |= {"translated": done.translated, "reused": done.reused}
            info |= {"seconds": round(done.seconds, 3)}
            if done.segments_per_second:
                info["segments_per_s"] = round(done.segments_per_second, 3)
            if done.tokens_per_second:
                info["tokens_per_s"] = round(done.tokens_per_second, 3)
            return info

        settings = _system_settings(spec, options, dataset, pairs)
        runner.run(
            tname,
            settings,
            ["data"],
            ["translations.jsonl"],
            translate_stage,
            carry=["translations.jsonl"],
        )
        by_id = {
            t.segment_id: t
            for t in read_records(output / tname / "translations.jsonl", Translation)
        }
        texts[spec] = [by_id[s.id].text for s in segments]
        names[spec] = by_id[segments[0].id].system

        sname = f"score/{key}"

        def score_stage(directory: Path, spec: str = spec) -> dict[str, Any]:
            scorer = metric()
            values = score_pairs(scorer, segments, texts[spec])
            write_records(
                directory / "scores.jsonl",
                ({"segment_id": s.id, "q": q} for s, q in zip(segments, values)),
            )
            mean = sum(values) / len(values)
            return {"metric": scorer.signature(), "mean": round(mean, 4)}

        metric_settings = {"metric": config["metric"]["name"], "args": config["metric"]["args"]}
        record = runner.run(sname, metric_settings, ["data", tname], ["scores.jsonl"], score_stage)
        rows = [
            json.loads(line) for line in (output / sname / "scores.jsonl").open(encoding="utf-8")
        ]
        qualities[spec] = [float(row["q"]) for row in rows]
        signature[spec] = record.info.get("metric", config["metric"]["name"])

    # routers, evaluation: once per large system
    router_args = _router_args(config)
    evaluation = config["evaluation"]
    small = config["small"]
    results: dict[str, dict[str, Any]] = {}
    left_out: set[str] = set()  # warned once, not once per large system
    eval_names: dict[str, str] = {}
    for large in config["large"]:
        examples = [
            ScoredExample(
                segment=segment,
                small_system=names[small],
                large_system=names[large],
                small_text=texts[small][i],
                large_text=texts[large][i],
                metric=signature[small],
                q_small=qualities[small][i],
                q_large=qualities[large][i],
            )
            for i, segment in enumerate(segments)
        ]
        label_stages = ["data", f"translate/{slug(small)}", f"score/{slug(small)}"]
        label_stages += [f"translate/{slug(large)}", f"score/{slug(large)}"]
        scores: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        router_stages = []
        for router in config["routers"]:
            rname = f"routers/{slug(large)}/{router}"
            reason = too_few_groups(get_router(router, **router_args[router]), examples)
            if reason is not None:  # a quick run on a few segments: say so and go on
                if router not in left_out:
                    log.warning("router %s left out: %s", router, reason)
                    left_out.add(router)
                continue

            def router_stage(
                directory: Path, router: str = router, examples: Any = examples
            ) -> dict[str, Any]:
                values, took = router_scores(
                    [router],
                    examples,
                    folds=evaluation["folds"],
                    seed=evaluation["seed"],
                    router_args={router: router_args[router]},
                    cv=evaluation["cv"],
                )
                write_json(
                    directory / "scores.json",
                    {
                        "router": router,
                        "ids": [s.id for s in segments],
                        "scores": [float(v) for v in values[router]],
                    },
                )
                return {"seconds": round(took[router], 3)}

            settings = {
                "router": router,
                "args": router_args[router],
                "folds": evaluation["folds"],
                "seed": evaluation["seed"],
            }
            if evaluation["cv"] != "kfold":  # absent for k-fold, so earlier runs stay cached
                settings["cv"] = evaluation["cv"]
            record = runner.run(rname, settings, label_stages, ["scores.json"], router_stage)
            stored = read_json(output / rname / "scores.json")
            scores[router] = stored["scores"]
            seconds[router] = float(record.info.get("seconds", 0.0))
            router_stages.append(rname)

        ename = f"evaluate/{slug(large)}"

        def evaluate_stage(
            directory: Path,
            large: str = large,
            examples: Any = examples,
            scores: Any = scores,
            seconds: Any = seconds,
        ) -> dict[str, Any]:
            result = evaluate_routers(
                examples,
                scores,
                evaluation["budgets"],
                severe_delta=float(evaluation["severe_delta"]),
                n_boot=evaluation["bootstrap"],
                seed=evaluation["seed"],
                baselines=evaluation["baselines"],
                run_info={
                    "command": "routelmt bench",
                    "name": config["name"],
                    "small": small,
                    "large": large,
                    "pairs": pairs,
                    "limit": data_cfg["limit"],
                    "cv": evaluation["cv"],
                    "folds": evaluation["folds"],
                    "router_args": router_args,
                    "router_seconds": seconds,
                },
            )
            write_json(directory / "result.json", result)
            return {"n": result["n"]}

        eval_settings = {k: evaluation[k] for k in ("budgets", "bootstrap", "severe_delta", "seed")}
        eval_settings |= {"baselines": evaluation["baselines"], "schema": EVALUATION_SCHEMA}
        runner.run(ename, eval_settings, router_stages, ["result.json"], evaluate_stage)
        results[large] = read_json(output / ename / "result.json")
        eval_names[large] = ename

    # where it ran changes no output: a run on Ray finds a local run's report cached
    recorded = {k: v for k, v in config.items() if k != "executor"}

    def report_stage(directory: Path) -> dict[str, Any]:
        written = {}
        for large, result in results.items():
            paths = write_report(result, directory / slug(large), plots=evaluation["plots"])
            written[large] = str(paths["report"].relative_to(output))
        with _atomic_text(directory / "config.yaml") as handle:
            handle.write("# the resolved configuration of this run (routelmt bench)\n")
            yaml.safe_dump(recorded, handle, sort_keys=False, allow_unicode=True)
        return {"reports": written}

    report_settings = {"plots": evaluation["plots"], "config": recorded}
    record = runner.run(
        "report", report_settings, list(eval_names.values()), ["config.yaml"], report_stage
    )
    reports = {large: output / rel for large, rel in record.info.get("reports", {}).items()}
    total = time.perf_counter() - begun
    log.info(
        "bench %s: %d stages (%d ran) in %.1fs",
        config["name"],
        len(runner.records),
        sum(r.status == "ran" for r in runner.records),
        total,
    )
    return BenchResult(output, config, runner.records, results, reports, total)


def _atomic_text(path: Path) -> Any:
    from routelmt.storage import atomic_open

    return atomic_open(path)
