"""tsrevel's benchmark suite (`make bench`): bounded, loopback-only measurements; never part of `make test`.

Each measure is one module (p1_intake ... p6_startup) with a `run(ctx) -> list[Row]`; `bench.run`
orchestrates them, prints the table and writes docs/performance.md. Every process a measure
starts is stopped by the measure itself (each is a context manager), and everything listens on
127.0.0.1 only.
"""
