"""``python -m spark_mcp.cli``: the same as the ``spark-mcp`` console script."""

import sys

from spark_mcp.cli import main

sys.exit(main())
