import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def lm():
    from engine.model.live_model import load_live_model
    return load_live_model()


@pytest.fixture(autouse=True)
def no_jobs_left_running():
    """A page a test opened may start a job (a sweep, a timing) the test never waits for. Left running it
    would hold the CPU gate through the next tests and stretch the whole run, so each test ends them."""
    yield
    from engine.runtime.jobs import cancel_all_jobs
    cancel_all_jobs()
