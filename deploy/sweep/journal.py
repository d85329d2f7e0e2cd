"""Finished cells of a cluster sweep, kept on the head as they arrive (one JSON file a cell,
named by its key, written atomically): re-running the same command after an interruption
picks them up instead of running them again."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgebase.files import write_text_atomic


class Journal:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # never finished (or unreadable): the cell runs again

    def put(self, key: str, record: dict[str, Any]) -> None:
        write_text_atomic(self.folder / f"{key}.json", json.dumps(record) + "\n")
