"""``python -m aerec ...``: the command line (see ``aerec --help``)."""
import sys

from .cli import main

sys.exit(main())
