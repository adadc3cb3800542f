import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # lets tests import the shared `strategies` helpers
torch.set_num_threads(1)  # the suite runs many tiny models: one thread each is fastest on 2 cores

# `run`s record themselves for the runs started beside them (study.local_runs): tests see only this
# session's runs, not those of other test sessions on the machine, so their worker counts do not depend on
# what else runs
if "ANYNET_SEARCH_RUNS_DIR" not in os.environ:
    os.environ["ANYNET_SEARCH_RUNS_DIR"] = tempfile.mkdtemp(prefix="anynet-search-test-runs-")
    atexit.register(shutil.rmtree, os.environ["ANYNET_SEARCH_RUNS_DIR"], True)
