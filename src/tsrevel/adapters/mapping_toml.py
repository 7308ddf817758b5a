"""Reads the mapping file (TOML) into the domain's MappingConfig, naming the file and line of any error."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tsrevel.domain.errors import ConfigError
from tsrevel.domain.mapping import MappingConfig, mapping_from_dict


def load_mapping_file(path: str | Path) -> MappingConfig:
    """Parse and validate the mapping file; raises ConfigError with the file and the line or key."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"TSREVEL_MAPPING_FILE: {file} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"TSREVEL_MAPPING_FILE: {file} cannot be read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already says "(at line N, column M)".
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        return mapping_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


class TomlMappingFile:
    """The MappingSource of the service: the TOML file named by TSREVEL_MAPPING_FILE, read on each load()."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    @property
    def location(self) -> str:
        return str(self._path.absolute())

    def load(self) -> MappingConfig:
        return load_mapping_file(self._path)
