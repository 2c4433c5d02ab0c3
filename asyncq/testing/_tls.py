"""Throw-away TLS certificates and the ``redis-server`` settings that use them.

Tests of TLS connections need a server certificate that a client can verify: a private
CA, and a certificate it signs for the loopback address. ``openssl`` makes both.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from asyncq.testing._support import LOOPBACK_HOST, HarnessError

__all__ = ["TlsFiles", "make_tls_files", "tls_server_args"]

# A day is plenty for a test run, and keeps a leaked key useless soon.
_VALID_DAYS = "1"


class TlsFiles(NamedTuple):
    """A CA certificate and a server certificate with its key, as file paths."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(folder: Path, host: str = LOOPBACK_HOST) -> TlsFiles:
    """Make a throw-away CA and a certificate it signs for ``host`` (an IP address) in
    ``folder``. Clients verify the server with ``ca_cert`` (``tls_ca_certs``)."""
    if shutil.which("openssl") is None:
        raise HarnessError("openssl is needed to make test certificates; it is not on PATH")
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, check=False)
        if done.returncode != 0:
            raise HarnessError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')}")

    (folder / "san.cnf").write_text(f"subjectAltName=IP:{host}\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", _VALID_DAYS,
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=asyncq test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", f"/CN={host}")  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", _VALID_DAYS, "-extfile", "san.cnf",
            "-out", "server.crt")  # fmt: skip
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")


def tls_server_args(files: TlsFiles, tls_port: int) -> list[str]:
    """``redis-server`` arguments for a TLS port beside the plain one. Clients need no
    certificate of their own; a replica or a cluster peer presents the server's."""
    return [
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(files.server_cert),
        "--tls-key-file", str(files.server_key),
        "--tls-ca-cert-file", str(files.ca_cert),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
