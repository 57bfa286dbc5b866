import sys

from aigateway.extproc.ops.cli import main

sys.exit(main())
