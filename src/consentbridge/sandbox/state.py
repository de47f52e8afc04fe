"""The sandbox's shared state: principals, limits, faults, counters and the token signing key.

Each emulator (Entra, Dataverse, Didomi) keeps its own data and receives this object so that a
token issued by Entra is accepted by Dataverse, `/_sandbox/limits` reaches the limiter, and
`/_sandbox/stats` sees every counter.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from consentbridge.sandbox.common import Faults, Limits, Principals, Stats

PRINCIPALS_FILE = "principals.json"
SIGNING_KEY_FILE = "signing-key.pem"


def _load_or_create_signing_key(state_dir: Path | None) -> rsa.RSAPrivateKey:
    path = state_dir / SIGNING_KEY_FILE if state_dir else None
    if path and path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if path:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(path, pem)
    return key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@dataclass
class SandboxState:
    principals: Principals
    signing_key: rsa.RSAPrivateKey
    state_dir: Path | None = None
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    signing_kid: str = "sandbox-key-1"
    # What `reset` brings the limits back to: the limits the sandbox started with (the published
    # cost model for `consentbridge sandbox`, a cost-free one for test sandboxes).
    initial_limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        self.initial_limits = replace(self.limits)

    @classmethod
    def load(cls, state_dir: Path | None, limits: Limits | None = None) -> SandboxState:
        """Principals and the signing key survive restarts when a state dir is given, so the
        printed credentials stay valid; everything else starts fresh, with `limits` (default:
        the published ones)."""
        if state_dir:
            state_dir.mkdir(parents=True, exist_ok=True)
        principals_path = state_dir / PRINCIPALS_FILE if state_dir else None
        if principals_path and principals_path.exists():
            principals = Principals.from_json(json.loads(principals_path.read_text()))
        else:
            principals = Principals.generate()
        state = cls(
            principals=principals,
            signing_key=_load_or_create_signing_key(state_dir),
            state_dir=state_dir,
            limits=limits or Limits(),
        )
        state.save_principals()
        return state

    def save_principals(self) -> None:
        if self.state_dir:
            data = json.dumps(self.principals.to_json(), indent=2).encode()
            _write_private(self.state_dir / PRINCIPALS_FILE, data)

    def reset(self) -> None:
        """Back to the first start: only the default app and Didomi credentials remain."""
        default = self.principals.apps[0]
        default.roles = ["System Administrator"]
        del self.principals.apps[1:]
        self.limits = replace(self.initial_limits)
        self.faults = Faults()
        self.stats.reset()
        self.save_principals()

    def public_key_pem(self) -> bytes:
        return self.signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def snapshot_path(self, name: str) -> Path | None:
        return self.state_dir / name if self.state_dir else None

    def describe(self) -> dict[str, Any]:
        return self.principals.public()
