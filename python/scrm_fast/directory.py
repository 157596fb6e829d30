"""The directory file (spec §6): who is who, for the consent rules. Validated on import
and kept in the tenant's store, sealed (``ArchiveStore.save_directory``)."""

from __future__ import annotations

from pathlib import Path

import orjson

from scrm_fast.errors import InputError

_REQUIRED = {
    "corp": ("corpid",),
    "employees": ("userid",),
    "customers": ("external_userid",),
    "groups": ("roomid", "owner"),
    "consent": ("userid", "external_userid", "status", "time"),
    "departments": ("id", "name"),
}


def load_directory(path: str | Path) -> dict:
    """Reads and checks a directory file; errors name the file and the missing key."""
    p = Path(path)
    try:
        doc = orjson.loads(p.read_bytes())
    except OSError as e:
        raise InputError(f"{p}: cannot read directory file: {e.strerror}") from e
    except orjson.JSONDecodeError as e:
        raise InputError(f"{p}: directory file is not JSON: {e}") from e
    validate_directory(doc, str(p))
    return doc


def validate_directory(doc: object, p: str) -> None:
    """The checks of :func:`load_directory` for a document from anywhere (``p`` names it)."""
    if not isinstance(doc, dict):
        raise InputError(f"{p}: directory file must be a JSON object")
    if "corp" not in doc:
        raise InputError(f"{p}: missing required key 'corp'")
    for section, keys in _REQUIRED.items():
        value = doc.get(section)
        if value is None:
            continue
        entries = [value] if section == "corp" else value
        if not isinstance(entries, list) or not all(isinstance(x, dict) for x in entries):
            raise InputError(f"{p}: '{section}' must be " + ("an object" if section == "corp" else "a list of objects"))
        for i, entry in enumerate(entries):
            for k in keys:
                if k not in entry:
                    where = section if section == "corp" else f"{section}[{i}]"
                    raise InputError(f"{p}: {where}: missing required key '{k}'")
