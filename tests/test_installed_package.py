"""The workflow works from an installed wheel, outside the checkout: ``meg-gym evaluate`` and ``meg-gym train``.

The wheel is built from this checkout and installed without dependencies into a fresh virtual environment whose
dependencies come from the test's own environment (a .pth file names its site-packages), so the test needs no
network; what it checks is that the wheel itself carries everything the command needs (code, assets, learners).
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel of this checkout installed; returns its bin/ folder."""
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(work)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(work.glob("meg_gym-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    purelib = Path(
        subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       capture_output=True, text=True, check=True).stdout.strip()
    )  # fmt: skip
    ours = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (purelib / "test_dependencies.pth").write_text("\n".join(ours) + "\n")
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index",
                              str(wheel)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    return venv / "bin"


def run(bin_dir: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_the_wheel_imports_from_its_own_install(installed, tmp_path):
    found = run(installed, tmp_path, "python", "-c", "import meg_gym, meg_gym_baselines; print(meg_gym.__file__)")
    assert found.returncode == 0, found.stderr[-3000:]
    assert str(ROOT) not in found.stdout and "site-packages" in found.stdout


def test_meg_gym_evaluate_runs_outside_the_checkout(installed, tmp_path):
    helped = run(installed, tmp_path, "meg-gym", "--help")
    assert helped.returncode == 0 and "evaluate" in helped.stdout and "train" in helped.stdout
    result = run(installed, tmp_path, "meg-gym", "evaluate", "--policy", "static", "--eval-episodes", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "runs" / "eval__static__1" / "eval.json").read_text())
    assert data["episodes"] == 8 and data["env_id"] == "MEG-PowerControl-v0"


def test_meg_gym_train_runs_a_learner_outside_the_checkout(installed, tmp_path):
    result = run(installed, tmp_path, "meg-gym", "train", "ppo-lagrangian", "--total-timesteps", "512",
                 "--num-envs", "8", "--eval-episodes", "8", "--run-name", "wheel", "--save-model")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "wheel" / "eval.json").exists()
    evaluated = run(installed, tmp_path, "meg-gym", "evaluate", "--env-id", "MEG-SplitControl-v0", "--policy",
                    "runs/wheel", "--eval-episodes", "8")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
