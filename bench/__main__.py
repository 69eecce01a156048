"""python -m bench [--quick]: see bench/run.py."""

from .run import main

raise SystemExit(main())
