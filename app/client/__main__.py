"""`python -m app.client tail ...`: see app/client/cli.py."""

import sys

from app.client.cli import main

sys.exit(main())
