"""`python -m transcriber`: the transcriber service (`scripts/run-service transcriber`)."""

import sys

from transcriber.pool import main

if __name__ == "__main__":
    sys.exit(main())
