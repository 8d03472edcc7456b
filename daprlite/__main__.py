"""``python -m daprlite`` is the ``daprlite`` command."""

from __future__ import annotations

import sys

from daprlite.cli.main import main

sys.exit(main())
