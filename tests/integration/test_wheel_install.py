"""A wheel built from this checkout, installed into a throwaway venv, runs the shipped default
bench by name (`routelmt bench default --set data.limit=6`, enough that every trained router is
scored; its metrics are checked) from a folder outside the repo: the YAML configs are package
data. The venv borrows the running environment's installed packages
(torch, transformers, ...) through a .pth line, so nothing is downloaded; the routelmt it runs
is the wheel's (checked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from bench_checks import DEFAULT_BENCH_SMALL, check_default_bench

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]
pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]


def _has_setuptools() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel --no-deps`` on a copy of the sources (the build leaves no files in the repo)."""
    tree = tmp_path / "tree"
    shutil.copytree(
        REPO / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    dist = tmp_path / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    if _has_setuptools():  # build offline with what is installed; else pip fetches setuptools
        cmd.append("--no-build-isolation")
    done = subprocess.run(
        [*cmd, "-w", str(dist), str(tree)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = dist.glob("routelmt-*.whl")
    return wheel


def _clean_env() -> dict[str, str]:
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _throwaway_venv(tmp_path: Path, wheel: Path) -> Path:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the running environment's packages, after the venv's own (the wheel wins)
    Path(purelib, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the borrowed packages include this checkout's own (editable) routelmt
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    install += ["--ignore-installed", str(wheel)]
    done = subprocess.run(install, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return env_dir


def test_wheel_runs_the_default_bench_by_name(wmt_root, tmp_path):
    wheel = _build_wheel(tmp_path)
    env_dir = _throwaway_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _clean_env()
    env.update(ROUTELMT_DATA=str(wmt_root), MPLCONFIGDIR=str(tmp_path / "mpl"))
    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import routelmt; print(routelmt.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where  # the wheel's copy, not the checkout's
    cmd = [str(env_dir / "bin" / "routelmt"), "bench", "default", *DEFAULT_BENCH_SMALL]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    # the installed copy's own config, which `bench default` ran
    config = Path(where).parent / "configs" / "default.yaml"
    check_default_bench(work / "runs" / "default", config, done.stderr)
