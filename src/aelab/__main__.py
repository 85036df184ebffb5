"""``python -m aelab``: the same command line as ``aelab``."""

import sys

from aelab.cli import main

if __name__ == "__main__":
    sys.exit(main())
