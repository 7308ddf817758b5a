"""tsrevel's own app served exactly as `tsrevel serve` serves it, with its worker off (P1) or its store counted (P2).

`python -m tsrevel serve` always runs the worker; without --worker this measures the intake path
alone, to show how much of P1 the worker's share of the one event loop costs. With --count-store
FILE the worker runs and every store operation is counted (bench/store_counting.py); the counts
are written to FILE on SIGUSR1 and at exit.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import uvicorn

from tsrevel.entrypoints import container as composition
from tsrevel.entrypoints.container import build_container
from tsrevel.entrypoints.http import create_app, uvicorn_options
from tsrevel.entrypoints.settings import Settings


def count_store(out: Path) -> None:
    """Make every store this process opens a CountingStore, and dump its counts to `out` on SIGUSR1 and at exit."""
    import atexit

    from bench.store_counting import CountingStore, SqlTransactions

    sql = SqlTransactions()
    sql.install()
    opened: list[CountingStore] = []
    make_store = composition.make_store

    def counting_make_store(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - make_store's own signature
        store = CountingStore(make_store(*args, **kwargs), sql)
        opened.append(store)
        return store

    composition.make_store = counting_make_store

    def dump(*_: object) -> None:
        if opened:
            opened[-1].dump(out)  # the service's store (the start-up check opens and closes one before it)

    signal.signal(signal.SIGUSR1, dump)
    atexit.register(dump)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--worker", action="store_true", help="run the worker, as `tsrevel serve` does")
    parser.add_argument("--count-store", type=Path, help="count store operations and write them to this JSON file (implies --worker)")
    args = parser.parse_args()
    if args.count_store is not None:
        count_store(args.count_store)
    container = build_container(Settings.from_env(os.environ))
    app = create_app(container, run_worker=args.worker or args.count_store is not None)
    uvicorn.run(app, host=args.host, port=args.port, **uvicorn_options(Settings.from_env(os.environ)))


if __name__ == "__main__":
    main()
