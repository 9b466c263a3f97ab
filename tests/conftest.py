"""Shared test set-up: offline, tiny models built once per session into a temporary cache."""

import itertools
import os
import shutil
import subprocess
import sys

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The pipelines' installed names are stylegrpo.training/.eval/.data_builder. From a checkout's root the
# folders are also visible as top-level `training`, ...: importing one that way would give a second copy of
# each module (its own constants, loggers and classes), so the session fails if anything did.
OLD_TOP_LEVEL = ("training", "eval", "data_builder")


def pytest_sessionfinish(session, exitstatus):
    stray = sorted(m for m in sys.modules if m.split(".")[0] in OLD_TOP_LEVEL)
    if stray:
        print(f"\nimported under the old top-level names (use stylegrpo.<name>): {', '.join(stray)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config):
    # Tiny models are far faster on one thread than on two threads fighting over 2 cores.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _tiny_model_cache(tmp_path_factory):
    """Tiny models are built into a per-session folder, so tests never depend on a user's cache."""
    old = os.environ.get("STYLEGRPO_CACHE")
    os.environ["STYLEGRPO_CACHE"] = str(tmp_path_factory.mktemp("stylegrpo-cache"))
    yield
    if old is None:
        os.environ.pop("STYLEGRPO_CACHE", None)
    else:
        os.environ["STYLEGRPO_CACHE"] = old


@pytest.fixture(scope="session")
def speak(tmp_path_factory):
    """``speak(text, *espeak_args)``: the 16 kHz waveform of espeak-ng reading ``text``, real speech for the
    acoustic, pitch and quality tests (read with stylegrpo.audio.read_wav). Skips where espeak-ng is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng): these checks need real speech")
    from stylegrpo.audio import read_wav

    folder = tmp_path_factory.mktemp("espeak")
    count = itertools.count()

    def speak(text: str, *args: str):
        path = folder / f"{next(count)}.wav"
        subprocess.run([exe, "-w", str(path), *args, text], check=True, capture_output=True, timeout=60)
        return read_wav(path)

    return speak


@pytest.fixture
def repo_styles():
    """The catalog shipped in the repository."""
    from stylegrpo.styles import _REPO_ROOT, load_catalog

    return load_catalog(_REPO_ROOT / "styles.yaml")
