"""The wheel, installed like a user would (not editable), works from an empty folder outside any checkout.

The wheel is built from a copy of the working tree (the checkout gets no build/ or egg-info), installed
without network into a fresh virtual environment that reuses this environment's dependencies through a
.pth line (only its folder on sys.path: its own .pth files, such as the editable stylegrpo finder, do not
run), then `stylegrpo styles`, `build`, one training step by recipe name and `say` run from an empty folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the build needs from the working tree: project metadata, the build step and the four source folders
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "styles.yaml")
SOURCE_DIRS = ("stylegrpo", "training", "eval", "data_builder")
TIMEOUT_S = 600  # per command: generous for a loaded 2-core machine; the whole test takes about a minute


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        shutil.copy2(ROOT / name, src / name)
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    _run([*cmd, "--disable-pip-version-check", "-q", "-w", str(dist), str(src)], src, dict(os.environ))
    (whl,) = dist.glob("stylegrpo-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel's stylegrpo, with this environment's packages behind it."""
    env_dir = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=TIMEOUT_S
    )
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    _run([*pip, "--disable-pip-version-check", str(wheel)], env_dir, dict(os.environ))
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT_S,
    ).stdout.strip()
    # Added after the install, so pip never saw the editable stylegrpo; appended after the venv's own
    # site-packages, so the wheel's copy is the one imported.
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(purelib) / "dev-environment.pth").write_text("".join(f"{p}\n" for p in ours))
    return env_dir


def test_wheel_holds_only_stylegrpo_and_the_catalog(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top = {n.split("/")[0] for n in names}
        assert {t for t in top if not t.endswith(".dist-info")} == {"stylegrpo"}, top
        assert z.read("stylegrpo/styles.yaml") == (ROOT / "styles.yaml").read_bytes()  # built, not kept
    for recipe in (ROOT / "training" / "recipes").glob("*.yaml"):
        assert f"stylegrpo/training/recipes/{recipe.name}" in names
    assert "stylegrpo/data_builder/corpus/default.txt" in names
    assert "stylegrpo/training/accelerate/ddp.yaml" in names
    assert "stylegrpo/eval/cli.py" in names


def test_the_editable_install_maps_the_same_names_from_any_folder(tmp_path):
    """`make install` (pip install -e .): outside the checkout stylegrpo.training is the repository's
    training/ folder, and no top-level `training`, `eval` or `data_builder` is importable."""
    code = (
        "import importlib.util, stylegrpo.training, stylegrpo.eval, stylegrpo.data_builder\n"
        "print(stylegrpo.training.__file__); print(stylegrpo.eval.__file__); print(stylegrpo.data_builder.__file__)\n"
        "print([n for n in ('training', 'eval', 'data_builder') if importlib.util.find_spec(n)])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = _run([sys.executable, "-c", code], tmp_path, env).stdout.splitlines()
    assert [Path(p) for p in out[:3]] == [
        ROOT / d / "__init__.py" for d in ("training", "eval", "data_builder")
    ]
    assert out[3] == "[]", out


def test_installed_wheel_runs_from_an_empty_folder(venv, tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STYLEGRPO_STYLES", "VIRTUAL_ENV")}
    # tiny models: the session's shared cache (conftest) or the user's, never downloaded
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONNOUSERSITE="1")
    bindir = venv / "bin"
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    py, sg = str(bindir / "python"), str(bindir / "stylegrpo")

    probe = _run(
        [
            py,
            "-c",
            "import importlib.util, stylegrpo, stylegrpo.training, stylegrpo.eval, stylegrpo.data_builder\n"
            "from stylegrpo.styles import default_styles_path\n"
            "print(stylegrpo.__file__); print(stylegrpo.training.__file__); print(default_styles_path())\n"
            "print([n for n in ('training', 'eval', 'data_builder') if importlib.util.find_spec(n)])",
        ],
        work,
        env,
    ).stdout.splitlines()
    for line in probe[:3]:
        assert Path(line).is_relative_to(venv), probe  # the wheel's copy, not the checkout's
    assert probe[2].endswith(os.path.join("stylegrpo", "styles.yaml"))
    assert probe[3] == "[]", probe  # no generic top-level modules

    styles = _run([sg, "styles"], work, env).stdout
    assert "whispering" in styles
    _run([sg, "build", "--out", "data/prompts"], work, env)
    assert (work / "data" / "prompts").is_dir()
    assert "tiny" in _run([sg, "train", "--list-recipes"], work, env).stdout
    # the recipe by name; its dataset_path is data/prompts, where build wrote
    train = [sg, "train", "--config", "tiny", "--output-dir", "runs/tiny", "--max_steps", "1"]
    _run(
        [*train, "--max_completion_length", "32", "--samples_every", "0", "--save_strategy", "no"], work, env
    )
    adapter = work / "runs" / "tiny" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    say = [sg, "say", "--preset", "tiny", "--adapter", str(adapter), "--style", "whispering", "Hello there."]
    _run([*say, "-o", "hello.wav"], work, env)
    assert (work / "hello.wav").stat().st_size > 44  # more than a WAV header
    assert sorted(p.name for p in work.iterdir()) == ["data", "hello.wav", "runs"]  # nothing else written
