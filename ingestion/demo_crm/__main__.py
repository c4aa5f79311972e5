"""``python -m ingestion.demo_crm [--port N] [--seed S] [--contacts N]``."""

import sys

from ingestion.demo_crm.server import main

sys.exit(main())
