import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # lets tests import the shared `strategies` helpers
torch.set_num_threads(1)  # the suite runs many tiny models: one thread each is fastest on 2 cores
