"""The end-to-end benchmark (``routelmt bench``) as cached, resumable stages.

data -> translate (small, every large) -> score -> routers (out-of-fold scores, one stage per
router and large system) -> evaluate -> report. Each stage is one function here over a ``Bench``
(the run's config, data and what earlier stages produced) and runs through the ``StageRunner``,
so a rerun skips a finished stage whose inputs are unchanged and recomputes one whose inputs
changed. Translation appends finished segments durably as it goes (``resumable.
translate_resumable``: as the backend's running batch finishes them, or one fsynced batch at a
time), so an interrupted run resumes per segment.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from routelmt.backends.base import Translator
from routelmt.backends.resolve import check_spec, parse_spec, slug
from routelmt.errors import ConfigError, InputError
from routelmt.executors import make_executor, score_batches, translate_batches
from routelmt.pipeline.context import Bench
from routelmt.pipeline.guards import guard_stage, qe_stage
from routelmt.pipeline.stages import StageRecord, StageRunner, exclusive
from routelmt.records import ScoredExample, Segment, Translation, read_records, write_records
from routelmt.resumable import salvage_translations, translate_resumable
from routelmt.storage import atomic_open, read_json, write_json

log = logging.getLogger(__name__)


@dataclass
class BenchResult:
    """Everything a run produced; ``results`` maps each large system to its evaluation."""

    output: Path
    config: dict[str, Any]
    stages: list[StageRecord]
    results: dict[str, dict[str, Any]]
    reports: dict[str, Path]
    seconds: float
    guards: dict[str, dict[str, Any]] = field(default_factory=dict)  # large -> guard table


# -- data ------------------------------------------------------------------------------------


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


def _write_segments(bench: Bench, directory: Path) -> dict[str, Any]:
    data = bench.config["data"]
    segments: list[Segment] = []
    for pair in bench.pairs:
        pair_segments = bench.dataset.segments(pair, reference=data["reference"])
        segments.extend(pair_segments[: data["limit"]] if data["limit"] else pair_segments)
    if not segments:
        raise InputError(f"no segments in pairs {', '.join(bench.pairs)}")
    write_records(directory / "segments.jsonl", segments)
    return {"segments": len(segments), "pairs": bench.pairs}


def data_stage(bench: Bench) -> None:
    """The segments of every pair (the first ``data.limit`` of each)."""
    settings = _data_settings(bench.dataset, bench.pairs, bench.config["data"])
    work = functools.partial(_write_segments, bench)
    bench.runner.run("data", settings, [], ["segments.jsonl"], work)
    bench.segments = read_records(bench.output / "data" / "segments.jsonl", Segment)


# -- translate -------------------------------------------------------------------------------


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


def _translate(bench: Bench, spec: str, options: dict[str, Any], directory: Path):
    make = functools.partial(bench.make, spec, dataset=bench.dataset, pairs=bench.pairs, **options)
    translator = make()
    out = directory / "translations.jsonl"
    carried = directory / "carried-translations.jsonl"
    salvaged = None
    if carried.exists():
        salvaged = salvage_translations(carried, bench.segments, translator.name, out)
        log.info("%s: %d translations still apply to the new data", spec, salvaged)
    recorded = parse_spec(spec).recorded  # a lookup: no work worth sending out
    remote = None if recorded else translate_batches(bench.executor, make)
    try:
        done = translate_resumable(
            translator,
            bench.segments,
            out,
            batch_size=bench.config["translate"]["batch_size"],
            source_hashes=True,
            run_batches=remote,
        )
    finally:
        translator.close()
    info = {"system": translator.name, "segments": len(bench.segments)}
    info["executor"] = "local" if remote is None else bench.executor.name
    if salvaged is not None:
        info["salvaged"] = salvaged
    info |= {"translated": done.translated, "reused": done.reused}
    info |= {"seconds": round(done.seconds, 3)}
    if done.segments_per_second:
        info["segments_per_s"] = round(done.segments_per_second, 3)
    if done.tokens_per_second:
        info["tokens_per_s"] = round(done.tokens_per_second, 3)
    return info


def translate_stage(bench: Bench, label: str, spec: str) -> str:
    """One system's translations of every segment; returns the stage name."""
    options = bench.options(label)
    name = f"translate/{slug(spec)}"
    settings = _system_settings(spec, options, bench.dataset, bench.pairs)
    work = functools.partial(_translate, bench, spec, options)
    outputs = ["translations.jsonl"]
    bench.runner.run(name, settings, ["data"], outputs, work, carry=outputs)
    path = bench.output / name / "translations.jsonl"
    by_id = {t.segment_id: t for t in read_records(path, Translation)}
    bench.texts[spec] = [by_id[s.id].text for s in bench.segments]
    bench.names[spec] = by_id[bench.segments[0].id].system
    return name


# -- score -----------------------------------------------------------------------------------


def _score(bench: Bench, spec: str, directory: Path) -> dict[str, Any]:
    from routelmt.labels import score_pairs
    from routelmt.metrics.base import get_metric

    scorer = bench.metric()
    metric = bench.config["metric"]
    make = functools.partial(get_metric, metric["name"], **metric["args"])
    values = score_batches(bench.executor, make, bench.segments, bench.texts[spec])
    where = "local" if values is None else bench.executor.name
    if values is None:
        values = score_pairs(scorer, bench.segments, bench.texts[spec])
    write_records(
        directory / "scores.jsonl",
        ({"segment_id": s.id, "q": q} for s, q in zip(bench.segments, values)),
    )
    mean = sum(values) / len(values)
    return {"metric": scorer.signature(), "mean": round(mean, 4), "executor": where}


def score_stage(bench: Bench, spec: str, translated: str) -> None:
    """Sentence scores of one system's translations against the references."""
    metric = bench.config["metric"]
    name = f"score/{slug(spec)}"
    settings = {"metric": metric["name"], "args": metric["args"]}
    work = functools.partial(_score, bench, spec)
    record = bench.runner.run(name, settings, ["data", translated], ["scores.jsonl"], work)
    with (bench.output / name / "scores.jsonl").open(encoding="utf-8") as handle:
        bench.qualities[spec] = [float(json.loads(line)["q"]) for line in handle]
    bench.signature[spec] = record.info.get("metric", metric["name"])


# -- routers ---------------------------------------------------------------------------------


def router_args(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-router settings; in-model routers read the live small model unless told otherwise."""
    from routelmt.backends.base import BACKENDS
    from routelmt.routers.base import ROUTERS

    args = {name: dict(config["router_args"].get(name, {})) for name in config["routers"]}
    small = parse_spec(config["small"])
    if small.argument and getattr(BACKENDS.get(small.kind), "model_for_routers", False):
        for name in config["routers"]:
            if getattr(ROUTERS.get(name), "reads_small_model", False):
                args[name].setdefault("model", small.argument)
    return args


def _router_scores(
    bench: Bench, router: str, args: dict[str, Any], examples: list[ScoredExample], directory: Path
) -> dict[str, Any]:
    from routelmt.crossval import router_scores

    evaluation = bench.evaluation
    values, took = router_scores(
        [router],
        examples,
        folds=evaluation["folds"],
        seed=evaluation["seed"],
        router_args={router: args},
        cv=evaluation["cv"],
    )
    write_json(
        directory / "scores.json",
        {
            "router": router,
            "ids": [s.id for s in bench.segments],
            "scores": [float(v) for v in values[router]],
        },
    )
    return {"seconds": round(took[router], 3)}


def router_stage(
    bench: Bench, large: str, router: str, args: dict[str, Any], examples: list[ScoredExample]
) -> tuple[str, list[float], float]:
    """Out-of-fold scores of one router against one large system: (stage, scores, seconds)."""
    small, evaluation = bench.config["small"], bench.evaluation
    name = f"routers/{slug(large)}/{router}"
    depends = ["data", f"translate/{slug(small)}", f"score/{slug(small)}"]
    depends += [f"translate/{slug(large)}", f"score/{slug(large)}"]
    settings = {"router": router, "args": args}
    settings |= {"folds": evaluation["folds"], "seed": evaluation["seed"]}
    if evaluation["cv"] != "kfold":  # absent for k-fold, so earlier runs stay cached
        settings["cv"] = evaluation["cv"]
    work = functools.partial(_router_scores, bench, router, args, examples)
    record = bench.runner.run(name, settings, depends, ["scores.json"], work)
    stored = read_json(bench.output / name / "scores.json")
    return name, stored["scores"], float(record.info.get("seconds", 0.0))


# -- evaluate and report ---------------------------------------------------------------------


def _evaluate(
    bench: Bench,
    large: str,
    examples: list[ScoredExample],
    scores: dict[str, Any],
    seconds: dict[str, float],
    directory: Path,
) -> dict[str, Any]:
    from routelmt.evaluation import evaluate_routers

    config, evaluation = bench.config, bench.evaluation
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
            "small": config["small"],
            "large": large,
            "pairs": bench.pairs,
            "limit": config["data"]["limit"],
            "cv": evaluation["cv"],
            "folds": evaluation["folds"],
            "router_args": router_args(config),
            "router_seconds": seconds,
        },
    )
    write_json(directory / "result.json", result)
    return {"n": result["n"]}


def evaluate_stage(bench: Bench, large: str, left_out: set[str]) -> tuple[str, dict[str, Any]]:
    """Every router against one large system, then the evaluation: (stage, result).
    ``left_out`` holds the routers already reported as left out (warned once per run)."""
    from routelmt.crossval import too_few_groups
    from routelmt.evaluation.evaluate import SCHEMA as EVALUATION_SCHEMA
    from routelmt.routers import get_router

    examples = bench.examples_for(large)
    args = router_args(bench.config)
    scores: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    router_stages = []
    for router in bench.config["routers"]:
        reason = too_few_groups(get_router(router, **args[router]), examples)
        if reason is not None:  # a quick run on a few segments: say so and go on
            if router not in left_out:
                log.warning("router %s left out: %s", router, reason)
                left_out.add(router)
            continue
        stage, scores[router], seconds[router] = router_stage(
            bench, large, router, args[router], examples
        )
        router_stages.append(stage)
    evaluation = bench.evaluation
    name = f"evaluate/{slug(large)}"
    settings = {k: evaluation[k] for k in ("budgets", "bootstrap", "severe_delta", "seed")}
    settings |= {"baselines": evaluation["baselines"], "schema": EVALUATION_SCHEMA}
    work = functools.partial(_evaluate, bench, large, examples, scores, seconds)
    bench.runner.run(name, settings, router_stages, ["result.json"], work)
    return name, read_json(bench.output / name / "result.json")


def _report(
    bench: Bench, results: dict[str, Any], recorded: dict[str, Any], directory: Path
) -> dict[str, Any]:
    from routelmt.evaluation import write_report

    written = {}
    for large, result in results.items():
        paths = write_report(result, directory / slug(large), plots=bench.evaluation["plots"])
        written[large] = str(paths["report"].relative_to(bench.output))
    with atomic_open(directory / "config.yaml") as handle:
        handle.write("# the resolved configuration of this run (routelmt bench)\n")
        yaml.safe_dump(recorded, handle, sort_keys=False, allow_unicode=True)
    return {"reports": written}


def report_stage(bench: Bench, results: dict[str, Any], evaluated: list[str]) -> dict[str, Path]:
    """The report of each large system and the resolved config; returns the report paths."""
    # where it ran changes no output: a run on Ray finds a local run's report cached
    recorded = {k: v for k, v in bench.config.items() if k != "executor"}
    settings = {"plots": bench.evaluation["plots"], "config": recorded}
    work = functools.partial(_report, bench, results, recorded)
    record = bench.runner.run("report", settings, evaluated, ["config.yaml"], work)
    return {large: bench.output / rel for large, rel in record.info.get("reports", {}).items()}


# -- the run ---------------------------------------------------------------------------------


def run_stages(bench: Bench, begun: float) -> BenchResult:
    """Every stage in order: data, then translate and score per system, then routers and
    evaluation per large system, then the report."""
    config = bench.config
    data_stage(bench)
    systems = {"small": config["small"]} | {f"large:{spec}": spec for spec in config["large"]}
    for label, spec in systems.items():
        score_stage(bench, spec, translate_stage(bench, label, spec))
    results: dict[str, dict[str, Any]] = {}
    evaluated: list[str] = []
    left_out: set[str] = set()
    guards: dict[str, dict[str, Any]] = {}
    qe = qe_stage(bench)
    for large in config["large"]:
        stage, results[large] = evaluate_stage(bench, large, left_out)
        evaluated.append(stage)
        table = guard_stage(bench, large, qe)
        if table is not None:
            guards[large] = table
    reports = report_stage(bench, results, evaluated)
    total = time.perf_counter() - begun
    records = bench.runner.records
    ran = sum(r.status == "ran" for r in records)
    log.info("bench %s: %d stages (%d ran) in %.1fs", config["name"], len(records), ran, total)
    return BenchResult(bench.output, config, records, results, reports, total, guards)


def _check_names(config: Mapping[str, Any]) -> None:
    """Every backend, router and the metric the config names resolves, before any work."""
    from routelmt.metrics.base import get_metric
    from routelmt.routers.base import ROUTERS

    systems = {"small": config["small"]} | {f"large:{spec}": spec for spec in config["large"]}
    for label, spec in systems.items():
        check_spec(spec, label.partition(":")[0])
    for name in config["routers"]:
        try:
            ROUTERS.get(name)
        except ConfigError as exc:
            raise ConfigError(f"'routers': {exc}") from None
    get_metric(config["metric"]["name"], **config["metric"]["args"])  # fail early on a bad name


def _pairs(data: Mapping[str, Any], dataset: Any) -> list[str]:
    """The pairs ``data.pairs`` names (``all``, a list, or a comma-separated string)."""
    known = dataset.pairs()
    pairs = known if data["pairs"] in ("all", ["all"]) else data["pairs"]
    if isinstance(pairs, str):
        pairs = [p.strip() for p in pairs.split(",") if p.strip()]
    for pair in pairs:
        if pair not in known:
            raise ConfigError(f"'data.pairs': unknown pair '{pair}'; known: {', '.join(known)}")
    return pairs


def run_bench(
    config: Mapping[str, Any],
    *,
    make_translator: Callable[..., Translator] | None = None,
) -> BenchResult:
    """Run (or resume) every stage of a validated config (``load_bench_config``)."""
    from routelmt.backends.resolve import make_translator as default_make_translator
    from routelmt.datasets.wmt import WMTDataset

    config = copy.deepcopy(dict(config))
    begun = time.perf_counter()
    output = Path(config["output"] or Path("runs") / config["name"])
    config["output"] = str(output)
    root = config["data"]["root"]
    if root is not None and not Path(root).exists():
        raise ConfigError(f"'data.root': folder not found: {root}")
    _check_names(config)
    dataset = WMTDataset(root)
    pairs = _pairs(config["data"], dataset)
    with exclusive(output):
        executor = make_executor(config["executor"])
        try:
            runner = StageRunner(output)
            make = make_translator or default_make_translator
            bench = Bench(config, output, dataset, pairs, make, executor, runner)
            return run_stages(bench, begun)
        finally:
            executor.close()
