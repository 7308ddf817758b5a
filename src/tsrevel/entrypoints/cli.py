"""The tsrevel command line: a thin layer over the same container and store as the service.

Every command but ``serve``, ``verify`` and ``drill`` opens the store the service uses, so it works
while the service is down. Operator actions go through the Processor's use cases, which write the
audit log (who, when, why). Exit codes: 0 done or clean, 1 refused or problems found, 2 bad
configuration, bad usage or an outside system that cannot be read.

This module is the ``tsrevel`` group; the commands live by what they do in cli_serve (serve),
cli_status (status, flags), cli_deliveries (deliveries, replay, discard, forget, prune, audit,
sync), cli_mapping (mapping, check-mapping, import-legacy) and cli_checks (reconcile, verify,
drill), over the plumbing of cli_common.
"""

from __future__ import annotations

import click

from tsrevel.entrypoints import cli_checks, cli_deliveries, cli_mapping, cli_serve, cli_status
from tsrevel.version import __version__


@click.group()
@click.version_option(__version__, prog_name="tsrevel")
def main() -> None:
    """tsrevel: TripleSeat -> Revel connector."""


for command in (
    cli_serve.serve,
    cli_status.status, cli_status.flags,
    cli_deliveries.deliveries, cli_deliveries.replay, cli_deliveries.discard, cli_deliveries.forget, cli_deliveries.prune,
    cli_deliveries.audit, cli_deliveries.sync,
    cli_mapping.mapping, cli_mapping.check_mapping, cli_mapping.import_legacy,
    cli_checks.reconcile, cli_checks.verify, cli_checks.drill,
):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover - python -m tsrevel.entrypoints.cli
    main()
