"""The UMAP warm-up that the app starts at its first page run really compiles UMAP (in a fresh process).

It starts while that run may be importing torch. Once, UMAP's own imports met torch half-initialised and the
warm-up failed quietly (seen once, timing-dependent: this test does not reproduce that interleaving at will);
ui/embeddings.py now imports torch first. What this test holds for sure: the warm-up runs to the end.
"""
import subprocess
import sys

from tests.pages import ROOT

PROBE = """
import logging
logging.disable(logging.WARNING)
from tests.pages import open_page
open_page("kv-cache")
from ui.embeddings import umap_warmup
umap_warmup().join(180)
from engine.inside.embeddings import umap_is_warm
print("warm" if umap_is_warm() else "cold")
"""


def test_the_warm_up_started_by_the_first_page_run_compiles_umap():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "warm", done.stderr[-2000:]
