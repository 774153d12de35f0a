"""`python -m orchestrator`: see orchestrator.cli."""

from orchestrator.cli import main

raise SystemExit(main())
