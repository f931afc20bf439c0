#!/usr/bin/env python3
"""Run the peerpunch chat peer from a checkout: python bin/peer.py --help"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from peerpunch.peer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
