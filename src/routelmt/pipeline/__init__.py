"""``routelmt bench``: the config (``pipeline.config``), the stage runner (``pipeline.stages``)
and the benchmark, one function per stage (``pipeline.bench``). Resumable translation lives in
``routelmt.resumable``; the names below stay importable from here."""

from routelmt.backends.resolve import slug
from routelmt.pipeline.bench import BenchResult, run_bench
from routelmt.pipeline.config import DEFAULTS, load_bench_config, parse_set, shipped_configs
from routelmt.pipeline.context import Bench
from routelmt.pipeline.stages import PIPELINE_FORMAT, STAGE_FILE, StageRecord, StageRunner
from routelmt.pipeline.stages import exclusive as _exclusive
from routelmt.resumable import (
    TranslateResult,
    read_partial_translations,
    salvage_translations,
    source_hash,
    translate_resumable,
)

__all__ = [
    "DEFAULTS",
    "PIPELINE_FORMAT",
    "STAGE_FILE",
    "Bench",
    "BenchResult",
    "StageRecord",
    "StageRunner",
    "TranslateResult",
    "_exclusive",
    "load_bench_config",
    "parse_set",
    "read_partial_translations",
    "run_bench",
    "salvage_translations",
    "shipped_configs",
    "slug",
    "source_hash",
    "translate_resumable",
]
