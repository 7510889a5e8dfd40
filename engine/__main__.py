"""``python -m engine``: see engine.cli."""

import sys

from engine.cli import main
from engine.cli.common import run_cli

sys.exit(run_cli(main))
