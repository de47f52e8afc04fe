"""Capture the structured log lines of in-process code: ``configure`` writes JSON to a buffer
for the block, and the process-wide logging setup is put back afterwards."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from consentbridge import logs


class CapturedLogs:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == name]


@contextmanager
def captured_logs(level: str = "DEBUG", user_ids: str = "hashed") -> Iterator[CapturedLogs]:
    root = logging.getLogger()
    ours = logging.getLogger("consentbridge")
    server = logging.getLogger("uvicorn")
    saved = (list(root.handlers), root.level, ours.level, ours.propagate)
    saved_server = (list(server.handlers), server.propagate)
    mode = logs._user_id_mode
    captured = CapturedLogs()
    logs.configure(level=level, log_format="json", user_ids=user_ids, stream=captured.stream)
    try:
        yield captured
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])
        ours.propagate = saved[3]
        server.handlers[:] = saved_server[0]
        server.propagate = saved_server[1]
        logs._user_id_mode = mode
