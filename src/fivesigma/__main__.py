"""``python -m fivesigma`` runs the command-line interface (the same as ``fivesigma``)."""

import sys

from fivesigma.cli import main

if __name__ == "__main__":
    sys.exit(main())
