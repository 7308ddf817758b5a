"""tsrevel's own app with its worker switched off, served exactly as `tsrevel serve` serves it (P1 variant).

`python -m tsrevel serve` always runs the worker; this measures the intake path alone, to show
how much of P1 the worker's share of the one event loop costs.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from tsrevel.entrypoints.container import build_container
from tsrevel.entrypoints.http import create_app, uvicorn_options
from tsrevel.entrypoints.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    container = build_container(Settings.from_env(os.environ))
    app = create_app(container, run_worker=False)
    uvicorn.run(app, host=args.host, port=args.port, **uvicorn_options(Settings.from_env(os.environ)))


if __name__ == "__main__":
    main()
