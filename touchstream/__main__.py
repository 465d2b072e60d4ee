import sys

from touchstream.runtime.cli import main

sys.exit(main())
