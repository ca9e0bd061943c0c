"""Standard `ssl.SSLContext`s built from certificate, key and CA file paths."""

from __future__ import annotations

import ssl
from os import PathLike

__all__ = ["client_context", "server_context"]

StrPath = str | PathLike[str]


def server_context(cert: StrPath, key: StrPath, ca: StrPath | None = None) -> ssl.SSLContext:
    """A TLS context for a listening server.

    Args:
        cert: PEM certificate chain of the server.
        key: PEM private key of `cert`.
        ca: PEM bundle; when given, clients must present a certificate it signed.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca: StrPath | None = None, cert: StrPath | None = None, key: StrPath | None = None
) -> ssl.SSLContext:
    """A TLS context for a client: verifies the server against `ca` (or the system store).

    Args:
        ca: PEM bundle trusted to sign the server's certificate.
        cert: PEM certificate for mutual TLS, if the server asks for one.
        key: PEM private key of `cert`.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context
