"""Line-numbered JSONL reading with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator


def read_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for every non-blank line of ``path``; a line that is not JSON
    raises ValueError naming ``path`` and the line."""
    path = Path(path)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {n}: not JSON ({exc.msg})") from exc
