"""Assembles the sandbox's single HTTPS origin: Entra ID, Dataverse, Didomi and control."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consentbridge.sandbox import control, entra, journeys_control
from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from consentbridge.sandbox.didomi.emulator import DidomiEmulator
from consentbridge.sandbox.state import SandboxState

SNAPSHOT_FILE = "snapshot.json"


@dataclass
class Sandbox:
    """The three emulators over one shared state; `app` is the ASGI application."""

    state: SandboxState
    dataverse: DataverseEmulator
    didomi: DidomiEmulator
    app: Starlette

    def save_snapshot(self) -> None:
        path = self.state.snapshot_path(SNAPSHOT_FILE)
        if path is None:
            return
        data = {"dataverse": self.dataverse.snapshot(), "didomi": self.didomi.snapshot()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    def load_snapshot(self) -> None:
        path = self.state.snapshot_path(SNAPSHOT_FILE)
        if path is None or not path.exists():
            return
        data = json.loads(path.read_text())
        self.dataverse.restore(data.get("dataverse", {}))
        self.didomi.restore(data.get("didomi", {}))


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"No sandbox route matches {request.url.path}."}, status_code=404)


def build_sandbox(state: SandboxState, *, persist: bool = True) -> Sandbox:
    dataverse = DataverseEmulator(state)
    didomi = DidomiEmulator(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await dataverse.aclose()
            await didomi.aclose()
            if persist:
                sandbox.save_snapshot()

    routes = [
        *control.routes(state, dataverse, didomi),
        *journeys_control.routes(dataverse),
        *entra.routes(state),
        *dataverse.routes(),
        *didomi.routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: _not_found})
    sandbox = Sandbox(state=state, dataverse=dataverse, didomi=didomi, app=app)
    if persist:
        sandbox.load_snapshot()
    return sandbox
