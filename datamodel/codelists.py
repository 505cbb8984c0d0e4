"""Ly's code lists (kodelister): GeoFA's official ones and Ly's own ``d_ly_*`` lists.

Each list is a JSON file in ``datamodel/codelists/`` (file name = list name + ``.json``), with
``name``, ``source``, ``description`` and ``values``; each value has ``kode``, ``tekst``,
``aktiv`` (1/0) and ``begrebsdefinition``, and may carry further keys (e.g. ``kommunekode`` in
``d_basis_ansvarlig_myndighed``), which end up in :attr:`Code.extra`. Sources and licences are
listed in ``datamodel/codelists/README.md``.

As in GeoFA, inactive values (``aktiv`` = 0) stay valid for old data but not for new data:
:meth:`CodeList.codes` gives the active codes, :meth:`CodeList.all_codes` every code.

Plain Python on purpose (no FastAPI, no database), so loaders, migrations, the service and the
tests can share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

#: Folder holding the JSON files. Note: it must stay a plain data folder (no ``__init__.py``),
#: otherwise it would shadow this module as ``datamodel.codelists``.
CODELIST_DIR = Path(__file__).parent / "codelists"

_CORE_KEYS = frozenset({"kode", "tekst", "aktiv", "begrebsdefinition"})


@dataclass(frozen=True)
class Code:
    """One value of a code list."""

    kode: int
    tekst: str
    aktiv: bool = True
    begrebsdefinition: str | None = None
    #: Further attributes of the value (e.g. ``kommunekode``). Treat as read-only.
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def as_dict(self) -> dict[str, Any]:
        """The value as in the JSON file (``aktiv`` as 1/0, extra keys flattened)."""
        return {
            "kode": self.kode,
            "tekst": self.tekst,
            "aktiv": int(self.aktiv),
            "begrebsdefinition": self.begrebsdefinition,
            **self.extra,
        }


@dataclass(frozen=True)
class CodeList:
    """A code list: a name, where its values came from, and its values in file order."""

    name: str
    source: str
    description: str
    values: tuple[Code, ...]

    def codes(self) -> set[int]:
        """The active codes (valid for new data)."""
        return {c.kode for c in self.values if c.aktiv}

    def all_codes(self) -> set[int]:
        """Every code, active or not (valid for existing data)."""
        return {c.kode for c in self.values}

    def get(self, kode: int) -> Code | None:
        """The value with this code, or None."""
        return self._by_code().get(kode)

    def text(self, kode: int) -> str | None:
        """The text (``tekst``) of a code, or None for an unknown code."""
        code = self.get(kode)
        return code.tekst if code is not None else None

    def is_valid(self, kode: int, *, include_inactive: bool = False) -> bool:
        """Whether ``kode`` may be used: active codes only unless ``include_inactive``."""
        code = self.get(kode)
        return code is not None and (code.aktiv or include_inactive)

    def __iter__(self) -> Iterator[Code]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __contains__(self, kode: object) -> bool:
        return kode in self._by_code()

    def _by_code(self) -> dict[int, Code]:
        # Built lazily and kept on the (frozen) instance.
        try:
            return self.__dict__["_index"]
        except KeyError:
            index = {c.kode: c for c in self.values}
            object.__setattr__(self, "_index", index)
            return index


def _code_from_json(raw: dict[str, Any], list_name: str) -> Code:
    missing = {"kode", "tekst"} - raw.keys()
    if missing:
        raise ValueError(f"{list_name}: value {raw!r} lacks {sorted(missing)}")
    kode, aktiv = raw["kode"], raw.get("aktiv", 1)
    if not isinstance(kode, int) or isinstance(kode, bool):
        raise ValueError(f"{list_name}: kode {kode!r} is not an integer")
    if aktiv not in (0, 1):
        raise ValueError(f"{list_name}: aktiv {aktiv!r} for kode {kode} is not 0 or 1")
    return Code(
        kode=kode,
        tekst=str(raw["tekst"]),
        aktiv=bool(aktiv),
        begrebsdefinition=raw.get("begrebsdefinition"),
        extra={k: v for k, v in raw.items() if k not in _CORE_KEYS},
    )


def _list_from_json(data: dict[str, Any], path: Path) -> CodeList:
    name = data.get("name")
    if name != path.stem:
        raise ValueError(f"{path.name}: name {name!r} does not match the file name")
    values = tuple(_code_from_json(v, name) for v in data["values"])
    kodes = [c.kode for c in values]
    if len(set(kodes)) != len(kodes):
        raise ValueError(f"{name}: duplicate codes")
    return CodeList(
        name=name,
        source=data.get("source", ""),
        description=data.get("description", ""),
        values=values,
    )


@lru_cache(maxsize=None)
def load_codelists() -> dict[str, CodeList]:
    """All code lists by name, read once from ``datamodel/codelists/*.json``.

    The dict is cached and shared: do not modify it.
    """
    lists: dict[str, CodeList] = {}
    for path in sorted(CODELIST_DIR.glob("*.json")):
        with path.open(encoding="utf-8") as f:
            lists[path.stem] = _list_from_json(json.load(f), path)
    return lists


def get_codelist(name: str) -> CodeList:
    """The code list called ``name``; KeyError if there is none."""
    try:
        return load_codelists()[name]
    except KeyError:
        raise KeyError(f"unknown code list: {name!r}") from None


__all__ = ["CODELIST_DIR", "Code", "CodeList", "get_codelist", "load_codelists"]
