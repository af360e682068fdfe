"""`python -m tests.fakeslack --port 0`: run the fake Slack server; prints PORT=<n> once listening."""

import sys

from .server import main

sys.exit(main())
