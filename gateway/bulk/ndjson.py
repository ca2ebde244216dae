"""NDJSON files of one type, split by size, each finished file renamed into place.

A file is written as `<name>.part` and renamed when complete, so a file under its final
name is always whole; the job records it (with its last resource id, the resume point)
right after. Memory is one buffered file, whatever the export's size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Literal

from gateway.bulk.jobs import ExportFile


class NdjsonParts:
    """`<type>-<part>.ndjson`, `<type>-<part+1>.ndjson`, ...: a new file once one reaches `max_bytes`."""

    def __init__(self, folder: Path, type_: str, part: int, max_bytes: int,
                 kind: Literal["output", "error"] = "output") -> None:
        self.folder, self.type, self.part, self.max_bytes, self.kind = folder, type_, part, max_bytes, kind
        self._file: BinaryIO | None = None
        self._size = 0
        self._count = 0
        self._last_id = ""

    @property
    def name(self) -> str:
        return f"{self.type}-{self.part}.ndjson"

    def write(self, line: bytes, id_: str) -> ExportFile | None:
        """Append one resource; returns the file it finished, if writing it crossed the size limit."""
        finished = self.close() if self._count and self._size + len(line) + 1 > self.max_bytes else None
        if self._file is None:
            self._file = open(self.folder / f"{self.name}.part", "wb", buffering=1 << 20)  # noqa: SIM115
        self._file.write(line)
        self._file.write(b"\n")
        self._size += len(line) + 1
        self._count += 1
        self._last_id = id_
        return finished

    def close(self) -> ExportFile | None:
        """Finish the current file (None when nothing was written to it) and move on to the next part."""
        if self._file is None:
            return None
        self._file.close()
        os.replace(self.folder / f"{self.name}.part", self.folder / self.name)
        done = ExportFile(self.name, self.kind, self.type, self.part, self._count, self._last_id)
        self._file, self._size, self._count = None, 0, 0
        self.part += 1
        return done

    def discard(self) -> None:
        """Drop an unfinished file (the job stopped): it is not part of any manifest."""
        if self._file is not None:
            self._file.close()
            (self.folder / f"{self.name}.part").unlink(missing_ok=True)
            self._file = None
