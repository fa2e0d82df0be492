"""The installed package, not the checkout: a wheel built from the repository carries everything a run needs (the
CLIP vocabulary, the toy world, configs and prompt sets), and the README's notebook snippet runs against it from a
directory that has no LocoLab files."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # builds and installs a wheel


def readme_snippet() -> str:
    """The README's notebook snippet: the python block that follows the marker comment."""
    found = re.search(r"<!-- notebook-snippet -->\s*```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert found, "README.md lost its notebook snippet marker"
    return found.group(1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project built as a wheel and installed (without dependencies, which the test venv has) into a folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info into the source tree.
    source = shutil.copytree(REPO, tmp / "source", ignore=shutil.ignore_patterns(
        ".git", ".venv", "artifacts", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("locolab-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(tmp / "site"),
                    str(wheel)], check=True, capture_output=True)
    return wheel, tmp / "site"


def _run(site: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_ships_the_data_a_run_needs(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("compute/models/assets/bpe_simple_vocab_16e6.txt.gz",
                   "compute/checkpoints/toyworld/unet/diffusion_pytorch_model.safetensors",
                   "compute/checkpoints/toyworld-clip/model.safetensors", "compute/configs/toyworld.yaml",
                   "compute/configs/style-sd-1.4.yaml", "contract/catalog/prompts/style.yaml",
                   "contract/catalog/prompts/toyworld/style.yaml", "contract/store.py", "dashboard/main.py",
                   "dashboard/views/layer_map.py", "dashboard/assets/favicon.png",
                   "dashboard/assets/DejaVuSans-subset.ttf", "dashboard/assets/DejaVuSans-LICENSE.txt"):
        assert f"locolab/{needed}" in names, needed
    # One import name in site-packages: nothing generic (compute, contract, dashboard) beside it.
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"locolab"}


def test_locolab_layers_of_the_toy_world_runs_from_any_directory(installed, tmp_path):
    _, site = installed
    done = _run(site, tmp_path, str(site / "bin" / "locolab"), "layers", "--model", "toyworld")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("16 cross-attention layers (sd1")
    where = _run(site, tmp_path, sys.executable, "-c", "import locolab; print(locolab.__file__)")
    assert where.stdout.strip().startswith(str(site))


def test_a_shipped_config_is_found_by_name_outside_the_repository(installed, tmp_path):
    _, site = installed
    done = _run(site, tmp_path, str(site / "bin" / "locolab"), "sweep", "toyworld", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "scorer toyworld-clip" in done.stdout


# What the snippet's names hold afterwards, checked in the same process (one run of the snippet in the suite).
SNIPPET_CHECKS = """
assert result.windows.num_rows == 16 + 15  # every window of sizes 1 and 2 over 16 layers
assert set(result.windows["n_seeds"].to_pylist()) == {2}
# Two seeds of one prompt are too few units to measure noise: the result says so instead of naming a window.
(concept,) = result.concepts.to_pylist()
assert not concept["measurable"] and result.minimal.num_rows == 0 and result.layers == []
assert "van gogh: not measurable: 2 prompt x seed units, at least 8" in repr(result)
assert edit.meta["layers"] == [8, 9] and len(images) == 1 and images[0].size == (64, 64)
assert figure.to_dict()["layer"] and next(part for part in figure.to_dict()["layer"] if part.get("name") == "cells")
"""


def test_the_readme_snippet_runs_as_written_against_the_installed_package(installed, tmp_path):
    _, site = installed
    script = f"import locolab\nassert locolab.__file__.startswith({str(site)!r})\n" + readme_snippet() + SNIPPET_CHECKS
    done = _run(site, tmp_path, sys.executable, "-c", script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Localization(run notebook-" in done.stdout
