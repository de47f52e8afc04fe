"""``config.ca_bundle``: the PEM file of CA certificates an integration trusts.

Judged when a document is applied (an existing regular file of at most ``MAX_CA_BUNDLE_BYTES``
holding at least one PEM certificate; a relative path is made absolute against the working
directory of the process that applies it, so the stored document does not depend on where the
service later starts) and read again whenever clients are built, since the file may have changed
or gone in between. Reading is blocking file I/O: async callers run these in a worker thread.

A failure is a ``CaBundleError`` whose ``reason`` completes a sentence that starts with
``ca_bundle`` (``ca_bundle`` + ``does not exist: /etc/ca.pem; …``).
"""

from __future__ import annotations

import os
import stat
from typing import Final

from cryptography import x509

MAX_CA_BUNDLE_BYTES: Final = 1024 * 1024
_FIX: Final = "give the path of a PEM file of CA certificates, or null to trust the system's CAs"


class CaBundleError(ValueError):
    """The CA bundle cannot be used; ``reason`` follows the field name."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"ca_bundle {reason}")
        self.reason = reason


def absolute_ca_bundle(path: str) -> str:
    """``path`` made absolute against the current working directory (``~`` expanded)."""
    return os.path.abspath(os.path.expanduser(path))


def read_ca_bundle(path: str) -> bytes:
    """The PEM bytes of the CA bundle at ``path``, or ``CaBundleError`` saying what is wrong."""
    try:
        with open(path, "rb") as file:
            # fstat on the open file, so the checks and the read are about the same file.
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CaBundleError(f"is not a regular file: {path}; {_FIX}")
            if info.st_size > MAX_CA_BUNDLE_BYTES:
                raise CaBundleError(
                    f"is larger than {MAX_CA_BUNDLE_BYTES // 1024} KiB: {path}; keep only the "
                    "CA certificates this integration needs in it"
                )
            data = file.read(MAX_CA_BUNDLE_BYTES + 1)
    except FileNotFoundError:
        raise CaBundleError(f"does not exist: {path}; {_FIX}") from None
    except IsADirectoryError:
        raise CaBundleError(f"is a directory, not a file: {path}; {_FIX}") from None
    except PermissionError:
        raise CaBundleError(
            f"cannot be read by this service (permission denied): {path}; let the service's "
            "user read it"
        ) from None
    except OSError as exc:
        raise CaBundleError(
            f"cannot be read ({exc.strerror or type(exc).__name__}): {path}; {_FIX}"
        ) from None
    if len(data) > MAX_CA_BUNDLE_BYTES:
        raise CaBundleError(f"is larger than {MAX_CA_BUNDLE_BYTES // 1024} KiB: {path}")
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CaBundleError(
            f"holds no valid PEM certificate: {path}; {_FIX} (each beginning "
            "with -----BEGIN CERTIFICATE-----)"
        ) from None
    return data


def check_ca_bundle(path: str) -> str:
    """The absolute path of a usable CA bundle, or ``CaBundleError``."""
    absolute = absolute_ca_bundle(path)
    read_ca_bundle(absolute)
    return absolute
