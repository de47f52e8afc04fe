"""An HTTPS server on loopback that is not the service an integration expects: it answers every
request with an HTML page (a login portal, a proxy's error page), or, in ``token_less`` mode,
like an OpenID authority whose token endpoint answers ``200 {}`` — no token. Its certificate is
self-signed, made fresh per server; ``cert_pem`` is the PEM to trust it."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HTML = b"<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>"


def self_signed() -> tuple[bytes, bytes]:
    """A certificate for 127.0.0.1 signed by its own key, and that key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class WrongServer:
    def __init__(self, *, token_less: bool = False) -> None:
        self.token_less = token_less
        self.cert_pem, key_pem = self_signed()
        self._dir = tempfile.TemporaryDirectory(prefix="cb-wrong-server-")
        cert_file, key_file = Path(self._dir.name, "cert.pem"), Path(self._dir.name, "key.pem")
        cert_file.write_bytes(self.cert_pem)
        key_file.write_bytes(key_pem)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                body, kind = server.body(self.path)
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
        self.base_url = f"https://127.0.0.1:{self._http.server_port}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def body(self, path: str) -> tuple[bytes, str]:
        if not self.token_less:
            return HTML, "text/html; charset=utf-8"
        if "openid-configuration" in path:
            tenant = self.base_url + "/" + path.strip("/").split("/")[0]
            document = {
                "issuer": tenant,
                "authorization_endpoint": f"{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{tenant}/oauth2/v2.0/token",
            }
            return json.dumps(document).encode(), "application/json"
        return b"{}", "application/json"

    def __enter__(self) -> WrongServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._dir.cleanup()
