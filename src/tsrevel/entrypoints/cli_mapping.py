"""`tsrevel mapping` (reload, unmapped, suggest), `tsrevel check-mapping` against Revel, and `tsrevel import-legacy`."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from tsrevel.entrypoints.cli_common import actor_option, echo_json, fail, load_settings, reason_option, run_in_session
from tsrevel.entrypoints.console import echo_table, mark


@click.group()
def mapping() -> None:
    """The mapping file: have the running service(s) read it again, see what it misses, get products proposed."""


@mapping.command("reload")
@reason_option()
@actor_option
def mapping_reload(reason: str, actor: str) -> None:
    """Validate TSREVEL_MAPPING_FILE and have every running service read it again before its next delivery.

    The reload is recorded in the store the services share, so every replica follows it (each reads
    its own TSREVEL_MAPPING_FILE); it is audited. A file that does not validate changes nothing:
    exit 2 with the file, the line and the problem.
    """

    async def act(session: Any) -> Any:
        return await session.processor.reload_mapping(actor=actor, reason=reason)

    status = run_in_session(act)
    click.echo(f"Mapping reload #{status.generation} recorded: {status.describe()}.")
    click.echo("Every running service reads the file again before its next delivery; replay what failed: tsrevel replay --state dead --reason ...")


# ---- the mapping file's helpers: what it misses, and proposals ---------------------------------------


@mapping.command("unmapped")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def mapping_unmapped(as_json: bool) -> None:
    """TripleSeat items and locations the mapping misses, with how many stored deliveries they stopped."""
    from tsrevel.entrypoints.views import unmapped_seen

    async def read(session: Any) -> list[Any]:
        return await unmapped_seen(session.processor)

    found = run_in_session(read, need_mapping=True)
    if as_json:
        echo_json([
            {"kind": u.kind, "name": u.name or u.what, "menu_item_id": u.menu_item_id, "locations": list(u.locations),
             "deliveries": u.count, "delivery_ids": list(u.delivery_ids), "toml": u.toml}
            for u in found
        ])
        return
    echo_table(
        ["WHAT", "NAME", "MENU ITEM", "LOCATION", "DELIVERIES"],
        [[u.kind, u.name or u.what, u.menu_item_id or "-", ",".join(u.locations) or "-", u.count] for u in found],
        empty="Nothing unmapped in the stored deliveries.",
    )
    if found:
        click.echo()
        click.echo("Propose products for them with: tsrevel mapping suggest")


@mapping.command("suggest")
@click.option("--location", "location_id", help="Only this TripleSeat location: its establishment's products, a [locations.ID.products] table.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the fragment to this new file (never overwritten) instead of printing it.")
@click.option("--min-score", default=80.0, show_default=True, type=click.FloatRange(0, 100), help="Propose nothing below this similarity (0-100).")
def mapping_suggest(location_id: str | None, out_file: str | None, min_score: float) -> None:
    """Propose a Revel product for each item name seen or unmapped, as a TOML fragment with the scores as comments."""
    from tsrevel.entrypoints import mapping_suggest as assist
    from tsrevel.entrypoints.operator import OperatorError, product_catalog
    from tsrevel.entrypoints.views import item_names_seen, unmapped_seen

    if out_file is not None and os.path.exists(out_file):
        fail(f"{out_file} exists; not overwriting it (choose another --out)", 2)

    async def act(session: Any) -> str:
        mapping = session.processor.mapping
        if location_id is not None and location_id not in mapping.locations:
            raise OperatorError(f"location {location_id} is not in the mapping file ({session.settings.mapping_file})")
        venues = [mapping.locations[location_id]] if location_id else [*mapping.locations.values(), *mapping.sites.values()]
        establishments = sorted({v.revel_establishment for v in venues})
        catalog = await product_catalog(session)
        products = [
            assist.Product(product_id=pid, name=name, establishment_id=est)
            for est in establishments for pid, name in await catalog.list_products(est)
        ]
        items = assist.items_to_map(await unmapped_seen(session.processor), await item_names_seen(session.processor), mapping)
        if location_id is not None:
            items = [i for i in items if not i.locations or location_id in i.locations]
        table = f"locations.{location_id}.products" if location_id else "products"
        suggestions = assist.suggest(items, products, min_score=min_score)
        return assist.render_toml(suggestions, table=table, min_score=min_score, establishments=establishments, now=session.processor.clock.now())

    fragment = run_in_session(act, need_mapping=True)
    if out_file is None:
        click.echo(fragment, nl=False)
        return
    try:
        with open(out_file, "x", encoding="utf-8") as handle:
            handle.write(fragment)
    except FileExistsError:
        fail(f"{out_file} exists; not overwriting it (choose another --out)", 2)
    click.echo(f"Wrote {out_file}; review it, then paste what is right into the mapping file.")

# ---- the mapping against Revel, and from the previous connector ---------------------------------------


@click.command("check-mapping")
def check_mapping() -> None:
    """Check that every establishment and product in the mapping file exists in Revel (read-only)."""
    from tsrevel.entrypoints.operator import check_mapping as run_check_mapping
    from tsrevel.entrypoints.operator import revel_lister

    settings = load_settings()

    async def act(session: Any) -> Any:
        return await run_check_mapping(session.processor.mapping, await revel_lister(session))

    result = run_in_session(act, need_mapping=True, settings=settings, need_store=False)
    click.echo(f"{settings.mapping_file}: {result.establishments_checked} establishment(s), {result.products_checked} product(s) checked against Revel")
    for problem in result.problems:
        click.echo(f"{mark(False)} {problem}")
    if not result.ok:
        fail(f"{len(result.problems)} mapping problem(s)", 1)
    click.echo(f"{mark(True)} every establishment and product exists in Revel")


@click.command("import-legacy")
@click.option("--locations", "locations_path", required=True, type=click.Path(dir_okay=False),
              help="The previous connector's config/locations.json.")
@click.option("--env", "env_path", type=click.Path(dir_okay=False), help="The previous connector's .env (secrets are read, never printed).")
@click.option("--out", default="mapping.toml", show_default=True, type=click.Path(dir_okay=False), help="The mapping file to write (never overwritten).")
def import_legacy(locations_path: str, env_path: str | None, out: str) -> None:
    """Convert the previous connector's locations.json and .env into a mapping file and the variables to set.

    Writes only --out; prints the variables, which secrets to copy (by name), and every value it could not carry over.
    """
    from tsrevel.entrypoints.legacy_import import run_import

    sys.exit(run_import(locations_path, env_path, out, echo=click.echo))
