"""`python -m app.client tail ...`: see app/client/cli.py."""

import sys

from .cli import main

sys.exit(main())
