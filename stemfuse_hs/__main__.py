"""``python -m stemfuse_hs``: the ``stemfuse`` command."""

import sys

from stemfuse_hs.cli import main

if __name__ == "__main__":
    sys.exit(main())
