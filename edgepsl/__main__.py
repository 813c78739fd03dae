"""Allow `python -m edgepsl`."""
import sys

from edgepsl.cli import main

sys.exit(main())
