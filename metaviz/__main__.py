import sys

from metaviz.cli import main

sys.exit(main())
