"""Input sources: files of GetChatData responses, JSONL (one document a line) or one
document per file (possibly pretty-printed). Yields whole documents as bytes; memory use is
one line at a time for JSONL."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from scrm_fast.errors import InputError

# A single-document file larger than this is refused rather than read into memory.
MAX_DOCUMENT_BYTES = 512 << 20


@dataclass(frozen=True)
class Document:
    source: str  # "path:line"
    data: bytes


def _is_one_document(path: Path) -> bool:
    """True when the file is not JSONL: its first non-empty line is not a JSON document
    but the whole file is."""
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                try:
                    orjson.loads(line)
                    return False
                except orjson.JSONDecodeError:
                    break
        else:
            return False
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        return False
    try:
        orjson.loads(path.read_bytes())
        return True
    except orjson.JSONDecodeError:
        return False


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; directories expand to their ``*.json``/``*.jsonl`` files, sorted."""
    files: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix in (".json", ".jsonl") and q.is_file())
            if not found:
                raise InputError(f"{p}: directory holds no .json or .jsonl files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such input file")
    return files


READ_BUFFER = 4 << 20


def iter_documents(files: Iterable[Path]) -> Iterator[Document]:
    for path in files:
        try:
            if _is_one_document(path):
                yield Document(f"{path}:1", path.read_bytes())
                continue
            # a GetChatData line is ~1 MB: a buffer of a few lines reads each in a few
            # system calls instead of hundreds of 8 KB ones (half the CPU of reading)
            with path.open("rb", buffering=READ_BUFFER) as f:
                for lineno, line in enumerate(f, 1):
                    # not `line.strip()`: that copies the whole ~1 MB line to test it
                    if line and not line.isspace():
                        yield Document(f"{path}:{lineno}", line)
        except OSError as e:
            raise InputError(f"{path}: cannot read: {e.strerror}") from e
