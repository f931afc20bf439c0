#!/usr/bin/env python3
"""Run the peerpunch relay from a checkout: python bin/relay.py --help"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from peerpunch.relay import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
