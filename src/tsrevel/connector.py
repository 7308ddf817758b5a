"""The library face's old address: the Connector lives in ``tsrevel.entrypoints.connector`` (``from tsrevel import Connector``)."""

from tsrevel.entrypoints.connector import Connector, Outcome, load_mapping

__all__ = ["Connector", "Outcome", "load_mapping"]
