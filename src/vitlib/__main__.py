"""``python -m vitlib``: the ``vitlib`` command."""

from __future__ import annotations

import sys

from vitlib.cli import main

sys.exit(main())
