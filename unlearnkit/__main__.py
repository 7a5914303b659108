import sys

from unlearnkit.cli import main

sys.exit(main())
