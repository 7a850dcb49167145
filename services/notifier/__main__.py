"""`python -m notifier`: the notifier service (`scripts/run-service notifier`)."""

import sys

from notifier.worker import main

if __name__ == "__main__":
    sys.exit(main())
