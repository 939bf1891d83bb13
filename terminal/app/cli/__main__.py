import sys

from terminal.app.cli import main

sys.exit(main())
