"""`python -m anynet_search` runs the command line."""

import sys

from anynet_search.cli import main

sys.exit(main())
