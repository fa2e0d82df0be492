import sys

from locolab.compute.cli import main

sys.exit(main())
