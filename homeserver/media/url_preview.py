"""URL previews (``/preview_url``): fetch a page, answer its Open Graph metadata.

Every address the fetch connects to, including those of redirects, is checked against
``url_preview_ip_range_blacklist`` (minus ``url_preview_ip_range_whitelist``): the resolver
drops every address of a name when any of them is blocked, and an IP literal in a URL
is refused before connecting, as Synapse does. Pages are read up to ``max_spider_size``
within a fixed time; images (the page's ``og:image``, or the URL itself) are kept as local
media so clients can show them through the media repository.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast
from urllib.parse import urlsplit

from twisted.internet import defer, protocol
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IHostnameResolver,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseDone  # twisted.web.client would load TLS
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer  # type: ignore[import-untyped]

from homeserver.config.model import IPNetwork, MediaConfig
from homeserver.errors import MatrixError, invalid_param
from homeserver.media.opengraph import decode_html, parse_open_graph
from homeserver.media.repository import MediaRepository
from homeserver.util.caches import LruCache

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
MAX_REDIRECTS = 5
# Synapse keeps a preview for an hour.
CACHE_MS = 3_600_000
USER_AGENT = b"Hearth (bot; URL preview)"
# Always unroutable: blocked whatever the config says (Synapse).
_ALWAYS_BLOCKED = (ipaddress.ip_network("0.0.0.0/32"), ipaddress.ip_network("::/128"))


class BlockedAddress(Exception):
    """The URL names an IP address the blacklist forbids."""


def _as_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


class AddressPolicy:
    def __init__(self, blacklist: Sequence[IPNetwork], whitelist: Sequence[IPNetwork]) -> None:
        self._blacklist = tuple(blacklist) + _ALWAYS_BLOCKED
        self._whitelist = tuple(whitelist)

    def is_blocked(self, host: str) -> bool:
        address = _as_ip(host)
        if address is None:
            return True  # not an address at all: never connect to it
        if any(address in network for network in self._whitelist):
            return False
        return any(address in network for network in self._blacklist)


@implementer(IHostnameResolver)
class _BlocklistingResolver:
    def __init__(self, resolver: Any, policy: AddressPolicy) -> None:
        self._resolver = resolver
        self._policy = policy

    def resolveHostName(
        self,
        resolutionReceiver: Any,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> Any:
        addresses: list[Any] = []
        policy = self._policy

        @implementer(IResolutionReceiver)
        class Receiver:
            def resolutionBegan(self, resolution: Any) -> None:
                resolutionReceiver.resolutionBegan(resolution)

            def addressResolved(self, address: Any) -> None:
                addresses.append(address)

            def resolutionComplete(self) -> None:
                # One blocked address poisons the name: a later connection attempt must not
                # fall back on it.
                if any(policy.is_blocked(a.host) for a in addresses):
                    logger.info("URL preview: %s resolves to a blocked address", hostName)
                else:
                    for address in addresses:
                        resolutionReceiver.addressResolved(address)
                resolutionReceiver.resolutionComplete()

        self._resolver.resolveHostName(
            Receiver(), hostName, portNumber, addressTypes, transportSemantics
        )
        return resolutionReceiver


@implementer(IReactorPluggableNameResolver)
class _BlocklistingReactor:
    """The reactor, seen through a resolver that hides blocked addresses."""

    def __init__(self, reactor: Any, policy: AddressPolicy) -> None:
        self._reactor = reactor
        self._resolver = _BlocklistingResolver(reactor.nameResolver, policy)

    @property
    def nameResolver(self) -> Any:
        return self._resolver

    def installNameResolver(self, resolver: Any) -> Any:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


@implementer(IAgent)
class _LiteralCheckingAgent:
    """Refuses a request (each hop of a redirect chain too) to a blocked IP literal."""

    def __init__(self, agent: Any, policy: AddressPolicy) -> None:
        self._agent = agent
        self._policy = policy

    def request(
        self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None
    ) -> defer.Deferred[Any]:
        host = urlsplit(uri.decode("ascii", "replace")).hostname or ""
        if _as_ip(host) is not None and self._policy.is_blocked(host):
            return defer.fail(BlockedAddress(host))
        result: defer.Deferred[Any] = self._agent.request(method, uri, headers, bodyProducer)
        return result


class _TooLarge(Exception):
    pass


class _BodyReader(protocol.Protocol):
    def __init__(self, limit: int, done: defer.Deferred[bytes]) -> None:
        self._limit = limit
        self._done = done
        self._buffer = BytesIO()

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._buffer.write(data)
        if self._buffer.tell() > self._limit:
            self._done.errback(_TooLarge())
            if self.transport is not None:
                self.transport.stopProducing()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone):
            self._done.callback(self._buffer.getvalue())
        else:
            self._done.errback(reason)


@dataclass(frozen=True, slots=True)
class _Fetched:
    url: str  # after redirects
    status: int
    media_type: str
    body: bytes
    download_name: str | None


def preview_error(status: int, error: str) -> MatrixError:
    return MatrixError(status, "M_UNKNOWN", error)


class UrlPreviewer:
    def __init__(
        self,
        config: MediaConfig,
        repository: MediaRepository,
        reactor: Any,
        now_ms: Callable[[], int],
    ) -> None:
        self._config = config
        self._repository = repository
        self._reactor = reactor
        self._now_ms = now_ms
        self._policy = AddressPolicy(
            config.url_preview_ip_range_blacklist, config.url_preview_ip_range_whitelist
        )
        self._agent: Any = None  # Any: IAgent's zope signature is not readable by mypy
        self._cache: LruCache[str, tuple[int, dict[str, Any]]] = LruCache(1000)

    async def preview(self, url: str, user_id: str) -> dict[str, Any]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid_param("Only http and https URLs can be previewed")
        if self._is_url_blocked(url):
            raise preview_error(403, "URL blocked")
        cached = self._cache.get(url)
        now = self._now_ms()
        if cached is not None and cached[0] > now:
            return dict(cached[1])
        fetched = await self._fetch(url)
        if fetched.media_type.startswith("image/") or fetched.media_type.startswith("video/"):
            og = await self._media_preview(fetched, user_id)
        elif fetched.media_type in ("text/html", "application/xhtml+xml"):
            og = parse_open_graph(decode_html(fetched.body, fetched.media_type), fetched.url)
            await self._keep_image(og, user_id)
        else:
            og = {}
        self._cache.set(url, (now + CACHE_MS, og))
        return dict(og)

    def _is_url_blocked(self, url: str) -> bool:
        """Synapse's url_preview_url_blacklist: an entry blocks when all its parts match."""
        parts = urlsplit(url)
        for entry in self._config.url_preview_url_blacklist:
            matched = True
            for attribute, pattern in entry.items():
                value = getattr(parts, attribute, None)
                if value is None:
                    matched = False
                    break
                text = str(value)
                if pattern.startswith("^"):
                    ok = re.match(pattern, text) is not None
                else:
                    ok = fnmatch.fnmatch(text, pattern)
                if not ok:
                    matched = False
                    break
            if matched:
                return True
        return False

    def _http_agent(self) -> Any:
        """Built on the first preview: Twisted's HTTP client loads the TLS stack (see
        ``homeserver.tls``), which a server nobody asked for a preview does not need."""
        if self._agent is None:
            from twisted.web.client import Agent, BrowserLikeRedirectAgent, HTTPConnectionPool

            pool = HTTPConnectionPool(self._reactor, persistent=False)
            agent = Agent(
                _BlocklistingReactor(self._reactor, self._policy),
                connectTimeout=CONNECT_TIMEOUT_S,
                pool=pool,
            )
            self._agent = BrowserLikeRedirectAgent(
                cast(IAgent, _LiteralCheckingAgent(agent, self._policy)),
                redirectLimit=MAX_REDIRECTS,
            )
        return self._agent

    async def _fetch(self, url: str) -> _Fetched:
        headers = Headers(
            {
                b"User-Agent": [USER_AGENT],
                b"Accept-Language": [", ".join(self._config.url_preview_accept_language).encode()],
            }
        )

        async def fetch() -> _Fetched:
            response: Any = await self._http_agent().request(b"GET", url.encode("ascii"), headers)
            declared = response.length
            limit = self._config.max_spider_size
            if isinstance(declared, int) and declared > limit:
                response.deliverBody(protocol.Protocol())
                raise _TooLarge()
            done: defer.Deferred[bytes] = defer.Deferred()
            response.deliverBody(_BodyReader(limit, done))
            body = await done
            content_type = response.headers.getRawHeaders(b"content-type", [b""])[0]
            media_type = content_type.decode("latin-1").split(";", 1)[0].strip().lower()
            final_url = response.request.absoluteURI.decode("ascii", "replace")
            return _Fetched(
                url=final_url,
                status=response.code,
                media_type=media_type or "application/octet-stream",
                body=body,
                download_name=None,
            )

        try:
            url.encode("ascii")
        except UnicodeEncodeError:
            raise invalid_param("The URL must be ASCII (percent-encode it)") from None
        work = defer.ensureDeferred(fetch())
        work.addTimeout(FETCH_TIMEOUT_S, self._reactor)
        try:
            fetched = await work
        except BlockedAddress:
            raise preview_error(403, "IP address blocked by IP blacklist entry") from None
        except DNSLookupError:
            # Also what a name resolving to a blocked address looks like.
            raise preview_error(
                502, "DNS resolution failure during URL preview generation"
            ) from None
        except _TooLarge:
            raise preview_error(502, "Content is larger than max_spider_size") from None
        except defer.TimeoutError:
            raise preview_error(504, "Timed out fetching the URL") from None
        except MatrixError:
            raise
        except Exception as e:
            logger.info("URL preview of %s failed: %r", url, e)
            raise preview_error(502, "Failed to download content") from None
        if fetched.status // 100 != 2:
            raise preview_error(502, f"The URL answered HTTP {fetched.status}")
        return fetched

    async def _media_preview(self, fetched: _Fetched, user_id: str) -> dict[str, Any]:
        media_id, info = await self._repository.store_fetched(
            user_id, fetched.body, fetched.media_type, fetched.download_name, fetched.url
        )
        og: dict[str, Any] = {
            "og:image": f"mxc://{self._repository.server_name}/{media_id}",
            "og:image:type": fetched.media_type,
            "matrix:image:size": len(fetched.body),
        }
        if fetched.download_name:
            og["og:description"] = fetched.download_name
        if info is not None:
            og["og:image:width"] = info.width
            og["og:image:height"] = info.height
        return og

    async def _keep_image(self, og: dict[str, Any], user_id: str) -> None:
        """Replace the page's og:image by a local copy (mxc), or drop it if unusable."""
        image_url = og.get("og:image")
        if not isinstance(image_url, str):
            return
        if not image_url.startswith(("http://", "https://")):
            del og["og:image"]
            return
        try:
            fetched = await self._fetch(image_url)
        except MatrixError as e:
            logger.info("URL preview: image %s not kept: %s", image_url, e.error)
            del og["og:image"]
            return
        if not fetched.media_type.startswith("image/"):
            del og["og:image"]
            return
        og.update(await self._media_preview(fetched, user_id))
