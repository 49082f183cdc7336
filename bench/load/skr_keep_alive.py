"""`skr` with uvicorn's keep-alive timeout set (``SKR_LOAD_KEEP_ALIVE`` seconds, 75 by
default; uvicorn's own default is 5 s), for the load harness's keep-alive experiment:
``run_load.py --skr-command '.venv/bin/python bench/load/skr_keep_alive.py'``."""

from __future__ import annotations

import functools
import os
import sys

import uvicorn

uvicorn.run = functools.partial(  # type: ignore[assignment]
    uvicorn.run, timeout_keep_alive=int(os.environ.get("SKR_LOAD_KEEP_ALIVE", "75"))
)

from skr.entrypoints.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
