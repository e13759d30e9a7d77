from __future__ import annotations

import sys

from keeper.cli import main

sys.exit(main())
