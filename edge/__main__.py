from __future__ import annotations

import sys

from edge.cli import main

sys.exit(main())
