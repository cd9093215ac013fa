"""Load the TLS stack (pyOpenSSL, cryptography, service_identity) only when it is needed.

Twisted imports pyOpenSSL as the reactor loads, to give every TCP connection ``startTLS``
and the reactor ``listenSSL``/``connectSSL``; that is ~14 MiB of resident memory, a fifth of
an idle Hearth. Hearth needs TLS only for a TLS listener and for outbound federation, and
neither uses ``startTLS``: the listener wraps its factory in Twisted's memory-BIO TLS
protocol, and the federation client wraps its endpoints (``wrapClientTLS``). So the ``hearth``
command loads the reactor with pyOpenSSL hidden (Twisted then leaves ``startTLS`` out, as it
does where pyOpenSSL is not installed), and the first TLS listener or federation request
imports it, as any later import would. After that, ``listenSSL`` and ``connectSSL`` work as
usual; ``startTLS`` on plain TCP connections stays unavailable for the life of the process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

_TLS_PACKAGE = "OpenSSL"


class _HideTLS(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == _TLS_PACKAGE or fullname.startswith(_TLS_PACKAGE + "."):
            # Twisted catches this and goes on without TLS support in the reactor.
            raise ImportError(f"{fullname} is loaded when first needed", name=fullname)
        return None


def install_reactor_without_tls() -> None:
    """Import the global reactor without pyOpenSSL (a no-op if either is loaded already)."""
    if "twisted.internet.reactor" in sys.modules or _TLS_PACKAGE in sys.modules:
        return
    finder = _HideTLS()
    sys.meta_path.insert(0, finder)
    try:
        import twisted.internet.reactor  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


def load_tls() -> None:
    """Import the TLS stack, and give the reactor back ``listenSSL`` and ``connectSSL``."""
    from twisted.internet import posixbase, ssl
    from twisted.protocols import tls

    # Module globals Twisted reads at call time; None where the reactor loaded without TLS.
    if posixbase.tls is None:
        posixbase.tls = tls
    if posixbase.ssl is None:
        posixbase.ssl = ssl
