import sys

from taskscope.cli import main

sys.exit(main())
