"""Other servers' signing keys: fetched through notaries (``trusted_key_servers``) or
directly, verified, cached in memory and in the database; and this server as a notary.

Signature checks on events are synchronous (``homeserver.events.signing`` takes a
``KeySource``): callers first ``await keyring.get_verify_keys({server: {key_id, ...}})``
and verify against the mapping it returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import nacl.exceptions
import nacl.signing
from signedjson.sign import sign_json
from twisted.internet.defer import Deferred
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.config.model import TrustedKeyServer
from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.signing import ED25519, ServerVerifyKey, decode_public_key
from homeserver.server_keys import ServerKeys
from homeserver.server_keys import key_id as signing_key_id
from homeserver.util.caches import LruCache
from homeserver.util.linearizer import Linearizer
from storage.server_keys import ServerKeyStore, StoredServerKey

logger = logging.getLogger(__name__)

# Spec: a key's validity is the lesser of its valid_until_ts and seven days into the future.
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000
# A server that just answered without the key asked for is not asked again this soon.
REFETCH_INTERVAL_MS = 60 * 1000
FAILED_REFETCH_MS = 2 * 1000
KEY_QUERY_TIMEOUT_SECONDS = 30.0


class KeyClient(Protocol):
    """What the keyring needs of the federation client."""

    async def get_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | Sequence[str]] | None = None,
        timeout: float | None = None,
    ) -> Any: ...

    async def post_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | Sequence[str]] | None = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> Any: ...


class KeyringError(Exception):
    """No key to check a signature with, or a signature that does not verify."""


class KeyDocumentError(Exception):
    """A key document that is malformed or not signed as it must be."""


@dataclass(frozen=True)
class KeyDocument:
    """A server's verified key document and the keys it gives."""

    server_name: str
    # As its owner signed it: only the owner's signatures.
    document: dict[str, Any]
    keys: dict[str, ServerVerifyKey]
    encoded_keys: dict[str, str]
    valid_until_ts: int


def _signature_ok(
    document: Mapping[str, Any], signer: str, key_id: str, key: nacl.signing.VerifyKey
) -> bool:
    signatures = document.get("signatures")
    if not isinstance(signatures, dict):
        return False
    by_signer = signatures.get(signer)
    signature = by_signer.get(key_id) if isinstance(by_signer, dict) else None
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in document.items() if k not in ("signatures", "unsigned")}
    try:
        key.verify(encode_canonical_json(unsigned), decode_base64(signature))
    except (ValueError, nacl.exceptions.CryptoError):
        return False
    return True


def parse_key_document(document: Any, expected_server: str, fetched_ts: int) -> KeyDocument:
    """Check a ``/_matrix/key/v2/server``-shaped document and its owner's signatures.

    Every owner signature made with one of the document's ``verify_keys`` must verify,
    and there must be at least one. Current keys are valid until the lesser of the
    document's ``valid_until_ts`` and seven days after ``fetched_ts``; old keys until
    their ``expired_ts``.
    """
    if not isinstance(document, dict):
        raise KeyDocumentError("key document is not an object")
    if document.get("server_name") != expected_server:
        raise KeyDocumentError(
            f"key document is for {document.get('server_name')!r}, not {expected_server!r}"
        )
    valid_until = document.get("valid_until_ts")
    if not isinstance(valid_until, int) or isinstance(valid_until, bool):
        raise KeyDocumentError("key document has no integer valid_until_ts")
    verify_keys = document.get("verify_keys")
    if not isinstance(verify_keys, dict):
        raise KeyDocumentError("key document has no verify_keys")
    keys: dict[str, ServerVerifyKey] = {}
    encoded: dict[str, str] = {}
    current: dict[str, nacl.signing.VerifyKey] = {}
    effective_until = min(valid_until, fetched_ts + MAX_KEY_VALIDITY_MS)
    for key_id, entry in verify_keys.items():
        if not key_id.startswith(ED25519 + ":"):
            continue
        raw = entry.get("key") if isinstance(entry, dict) else None
        verify_key = decode_public_key(raw) if isinstance(raw, str) else None
        if verify_key is None:
            raise KeyDocumentError(f"verify key {key_id} is not an Ed25519 key")
        current[key_id] = verify_key
        keys[key_id] = ServerVerifyKey(verify_key, effective_until)
        encoded[key_id] = encode_base64(verify_key.encode())
    old_keys = document.get("old_verify_keys", {})
    if isinstance(old_keys, dict):
        for key_id, entry in old_keys.items():
            if key_id in keys or not key_id.startswith(ED25519 + ":"):
                continue
            if not isinstance(entry, dict):
                continue
            raw, expired_ts = entry.get("key"), entry.get("expired_ts")
            verify_key = decode_public_key(raw) if isinstance(raw, str) else None
            if verify_key is None or not isinstance(expired_ts, int):
                continue
            keys[key_id] = ServerVerifyKey(verify_key, expired_ts)
            encoded[key_id] = encode_base64(verify_key.encode())
    signatures = document.get("signatures")
    own = signatures.get(expected_server) if isinstance(signatures, dict) else None
    signed_with = [k for k in (own or {}) if k in current]
    if not signed_with:
        raise KeyDocumentError(f"key document is not signed by {expected_server}")
    for key_id in signed_with:
        if not _signature_ok(document, expected_server, key_id, current[key_id]):
            raise KeyDocumentError(f"signature {key_id} on the key document does not verify")
    owner_signed = dict(document)
    owner_signed["signatures"] = {expected_server: dict(own or {})}
    owner_signed.pop("unsigned", None)
    return KeyDocument(expected_server, owner_signed, keys, encoded, valid_until)


class Keyring:
    def __init__(
        self,
        server_keys: ServerKeys,
        store: ServerKeyStore,
        client: KeyClient | None,
        trusted_key_servers: Sequence[TrustedKeyServer],
        now_ms: Callable[[], int],
        *,
        verify_certificates: bool = True,
    ) -> None:
        self.server_name = server_keys.server_name
        # A notary with no configured verify_keys is trusted through its TLS certificate
        # (as Synapse): only when certificates are verified, or the admin says so.
        self._verify_certificates = verify_certificates
        self._server_keys = server_keys
        self._store = store
        self._client = client
        self._notaries = [t for t in trusted_key_servers if t.server_name != self.server_name]
        self._now_ms = now_ms
        self._cache: LruCache[tuple[str, str], ServerVerifyKey] = LruCache(10_000)
        self._fetch_lock = Linearizer()
        # server -> when we last asked anyone for its keys
        self._last_fetch: dict[str, int] = {}
        # server -> callers waiting for the fetch of its keys under way
        self._in_flight: dict[str, list[Deferred[None]]] = {}

    def set_client(self, client: KeyClient) -> None:
        self._client = client

    # --- our own keys -------------------------------------------------------------------

    def _own_keys(self) -> dict[str, ServerVerifyKey]:
        now = self._now_ms()
        keys = {
            signing_key_id(k): ServerVerifyKey(
                nacl.signing.VerifyKey(k.verify_key.encode()),
                now + self._server_keys.key_refresh_interval_ms,
            )
            for k in self._server_keys.signing_keys
        }
        for key_id, old in self._server_keys.old_signing_keys.items():
            verify_key = decode_public_key(old.key)
            if verify_key is not None and key_id not in keys:
                keys[key_id] = ServerVerifyKey(verify_key, old.expired_ts)
        return keys

    # --- lookups --------------------------------------------------------------------------

    async def get_verify_keys(
        self, requests: Mapping[str, Collection[str]], min_valid_ts: int = 0
    ) -> dict[tuple[str, str], ServerVerifyKey]:
        """The keys asked for (server → key IDs; no key IDs: every key of the server).

        A key not known valid until ``min_valid_ts`` is looked up again (notaries first,
        then the server itself); the best key known is returned even if it is expired, as
        the caller decides what validity it needs. Keys that cannot be found are absent.
        """
        found: dict[tuple[str, str], ServerVerifyKey] = {}
        missing: dict[str, set[str]] = {}
        for server_name, key_ids in requests.items():
            if server_name == self.server_name:
                own = self._own_keys()
                for key_id in key_ids or own:
                    if key_id in own:
                        found[(server_name, key_id)] = own[key_id]
                continue
            if not key_ids:
                missing[server_name] = set()
                continue
            for key_id in key_ids:
                cached = self._cache.get((server_name, key_id))
                if cached is not None:
                    found[(server_name, key_id)] = cached
                if cached is None or cached.valid_until_ts < min_valid_ts:
                    missing.setdefault(server_name, set()).add(key_id)
        if not missing:
            return found
        await self._load_from_store(missing, min_valid_ts, found)
        if missing:
            await self._fetch(missing, min_valid_ts, found)
        return found

    def _satisfy(
        self,
        server_name: str,
        keys: Mapping[str, ServerVerifyKey],
        missing: dict[str, set[str]],
        min_valid_ts: int,
        found: dict[tuple[str, str], ServerVerifyKey],
    ) -> None:
        """Put ``keys`` in the cache and ``found``; strike what they answer from ``missing``."""
        wanted = missing.get(server_name)
        for key_id, key in keys.items():
            self._cache.set((server_name, key_id), key)
            if wanted is None:
                continue
            previous = found.get((server_name, key_id))
            if (not wanted or key_id in wanted) and (
                previous is None or key.valid_until_ts >= previous.valid_until_ts
            ):
                found[(server_name, key_id)] = key
            if key_id in wanted and key.valid_until_ts >= min_valid_ts:
                wanted.discard(key_id)
        if wanted is not None and not wanted:
            # An empty request ("all keys") is answered by any key.
            if any(server == server_name for server, _ in found):
                del missing[server_name]

    async def _load_from_store(
        self,
        missing: dict[str, set[str]],
        min_valid_ts: int,
        found: dict[tuple[str, str], ServerVerifyKey],
    ) -> None:
        rows = await self._store.get_keys(list(missing))
        by_server: dict[str, dict[str, ServerVerifyKey]] = {}
        for row in rows:
            verify_key = decode_public_key(row.verify_key)
            if verify_key is not None:
                by_server.setdefault(row.server_name, {})[row.key_id] = ServerVerifyKey(
                    verify_key, row.valid_until_ts
                )
        for server_name, keys in by_server.items():
            if server_name in missing:
                self._satisfy(server_name, keys, missing, min_valid_ts, found)

    async def _fetch(
        self,
        missing: dict[str, set[str]],
        min_valid_ts: int,
        found: dict[tuple[str, str], ServerVerifyKey],
    ) -> None:
        if self._client is None:
            return
        # A fetch already under way for another caller (say, an inbound request's
        # X-Matrix check while a send_join answer is verified) is waited for, not
        # skipped: what it stores is what this caller needs.
        waits: list[Deferred[None]] = []
        for server_name in missing:
            if server_name in self._in_flight:
                waiter: Deferred[None] = Deferred()
                self._in_flight[server_name].append(waiter)
                waits.append(waiter)
        for waiter in waits:
            await waiter
        if waits:
            await self._load_from_store(missing, min_valid_ts, found)
        now = self._now_ms()
        for server_name in list(missing):
            last = self._last_fetch.get(server_name)
            if last is not None and now - last < REFETCH_INTERVAL_MS:
                del missing[server_name]
        for server_name in missing:
            self._last_fetch[server_name] = now
            self._in_flight.setdefault(server_name, [])
        fetching = list(missing)
        try:
            await self._fetch_from_anyone(missing, min_valid_ts, found)
        finally:
            for server_name in missing:
                # Not found (a timeout on a busy server, say): ask again after a short
                # pause rather than drop every event it signs for a whole minute.
                self._last_fetch[server_name] = now - REFETCH_INTERVAL_MS + FAILED_REFETCH_MS
            for server_name in fetching:
                for waiter in self._in_flight.pop(server_name, []):
                    waiter.callback(None)

    async def _fetch_from_anyone(
        self,
        missing: dict[str, set[str]],
        min_valid_ts: int,
        found: dict[tuple[str, str], ServerVerifyKey],
    ) -> None:
        for notary in self._notaries:
            if not missing:
                return
            try:
                documents = await self._query_notary(notary, missing, min_valid_ts)
            except Exception as e:
                logger.info("key query to notary %s failed: %s", notary.server_name, e)
                continue
            for document in documents:
                if document.server_name in missing:
                    self._satisfy(document.server_name, document.keys, missing, min_valid_ts, found)
        for server_name in list(missing):
            try:
                document = await self.fetch_direct(server_name)
            except Exception as e:
                logger.info("fetching the keys of %s failed: %s", server_name, e)
                continue
            self._satisfy(server_name, document.keys, missing, min_valid_ts, found)

    async def fetch_direct(self, server_name: str) -> KeyDocument:
        """``GET /_matrix/key/v2/server`` from the server itself; verified and stored."""
        assert self._client is not None
        async with self._fetch_lock.lock(server_name):
            fetched_ts = self._now_ms()
            response = await self._client.get_json(
                server_name, "/_matrix/key/v2/server", timeout=KEY_QUERY_TIMEOUT_SECONDS
            )
            document = parse_key_document(response, server_name, fetched_ts)
            await self._save([document], server_name, fetched_ts)
            return document

    async def _query_notary(
        self, notary: TrustedKeyServer, missing: Mapping[str, Collection[str]], min_valid_ts: int
    ) -> list[KeyDocument]:
        assert self._client is not None
        fetched_ts = self._now_ms()
        criteria = {"minimum_valid_until_ts": min_valid_ts} if min_valid_ts else {}
        body = {
            "server_keys": {
                server: {key_id: dict(criteria) for key_id in key_ids}
                for server, key_ids in missing.items()
            }
        }
        response = await self._client.post_json(
            notary.server_name,
            "/_matrix/key/v2/query",
            data=body,
            timeout=KEY_QUERY_TIMEOUT_SECONDS,
        )
        entries = response.get("server_keys") if isinstance(response, dict) else None
        if not isinstance(entries, list):
            raise KeyDocumentError(f"notary {notary.server_name} sent no server_keys list")
        notary_keys = {
            key_id: key
            for key_id, key in ((k, decode_public_key(v)) for k, v in notary.verify_keys.items())
            if key is not None
        }
        if not notary_keys and (self._verify_certificates or notary.accept_keys_insecurely):
            # No keys configured: the notary's own, fetched from it over (verified) TLS.
            own = await self.fetch_direct(notary.server_name)
            notary_keys = {key_id: key.verify_key for key_id, key in own.keys.items()}
        documents = []
        for entry in entries:
            server_name = entry.get("server_name") if isinstance(entry, dict) else None
            if not isinstance(server_name, str) or server_name not in missing:
                continue
            try:
                if notary_keys:
                    if not any(
                        _signature_ok(entry, notary.server_name, key_id, key)
                        for key_id, key in notary_keys.items()
                    ):
                        raise KeyDocumentError(
                            f"not signed by notary {notary.server_name} with a configured key"
                        )
                else:
                    raise KeyDocumentError(
                        f"notary {notary.server_name} has no verify_keys configured and"
                        " certificates are not verified (set accept_keys_insecurely to trust it)"
                    )
                documents.append(parse_key_document(entry, server_name, fetched_ts))
            except KeyDocumentError as e:
                logger.warning("ignoring keys for %s from %s: %s", server_name, notary, e)
        await self._save(documents, notary.server_name, fetched_ts)
        return documents

    async def _save(self, documents: Sequence[KeyDocument], from_server: str, ts: int) -> None:
        rows = []
        for document in documents:
            key_json = json.dumps(document.document, separators=(",", ":"))
            for key_id, key in document.keys.items():
                rows.append(
                    StoredServerKey(
                        server_name=document.server_name,
                        key_id=key_id,
                        verify_key=document.encoded_keys[key_id],
                        valid_until_ts=key.valid_until_ts,
                        fetched_ts=ts,
                        from_server=from_server,
                        key_json=key_json,
                        document_valid_until_ts=document.valid_until_ts,
                    )
                )
        await self._store.store_keys(rows)

    # --- verifying signed JSON (federation requests, key documents...) ----------------

    async def verify_json_for_server(
        self, server_name: str, json_object: Mapping[str, Any], min_valid_ts: int
    ) -> None:
        """Raise KeyringError unless ``json_object`` has ``server_name``'s signature by a
        key valid at ``min_valid_ts``; every such signature must verify."""
        signatures = json_object.get("signatures")
        by_server = signatures.get(server_name) if isinstance(signatures, dict) else None
        if not isinstance(by_server, dict) or not by_server:
            raise KeyringError(f"not signed by {server_name}")
        key_ids = {k for k in by_server if isinstance(k, str) and k.startswith(ED25519 + ":")}
        if not key_ids:
            raise KeyringError(f"no Ed25519 signature from {server_name}")
        keys = await self.get_verify_keys({server_name: key_ids}, min_valid_ts)
        verified = False
        for key_id in sorted(key_ids):
            key = keys.get((server_name, key_id))
            if key is None or key.valid_until_ts < min_valid_ts:
                continue
            if not _signature_ok(json_object, server_name, key_id, key.verify_key):
                raise KeyringError(f"invalid signature {key_id} from {server_name}")
            verified = True
        if not verified:
            raise KeyringError(
                f"no key of {server_name} valid at {min_valid_ts} among {sorted(key_ids)}"
            )

    # --- serving as a notary -----------------------------------------------------------

    async def notary_query(
        self, query: Mapping[str, Mapping[str, int]], minimum_valid_until_ts: int = 0
    ) -> list[dict[str, Any]]:
        """Key documents for ``/_matrix/key/v2/query``, each signed by us as well.

        ``query``: server → key ID → minimum_valid_until_ts (0: now). A server queried with
        no key IDs gets all its keys, valid until ``minimum_valid_until_ts`` if possible. A
        server's keys are fetched from it again when a key asked for is unknown or not
        valid long enough, or when the cached document is past half its lifetime (as the
        spec advises notaries); if that fails, the cached documents are still served.
        """
        now = self._now_ms()
        results: list[dict[str, Any]] = []
        remote = {server: wanted for server, wanted in query.items() if server != self.server_name}
        if self.server_name in query:
            results.append(self._server_keys.key_document(now))
        stored = await self._store.get_keys(list(remote))
        rows_by_server: dict[str, list[StoredServerKey]] = {}
        for row in stored:
            rows_by_server.setdefault(row.server_name, []).append(row)
        for server_name, wanted in remote.items():
            rows = rows_by_server.get(server_name, [])
            if self._client is not None and _notary_should_refetch(
                rows, wanted, minimum_valid_until_ts or now, now
            ):
                try:
                    await self.fetch_direct(server_name)
                    rows = await self._store.get_keys([server_name])
                except Exception as e:
                    logger.info("notary: fetching the keys of %s failed: %s", server_name, e)
            served: set[str] = set()
            for row in sorted(rows, key=lambda r: -r.fetched_ts):
                if wanted and row.key_id not in wanted:
                    continue
                if row.key_json in served:
                    continue
                served.add(row.key_json)
                results.append(self._sign_as_notary(json.loads(row.key_json)))
        return results

    def _sign_as_notary(self, document: dict[str, Any]) -> dict[str, Any]:
        for key in self._server_keys.signing_keys:
            document = sign_json(document, self.server_name, key)
        return document


def _notary_should_refetch(
    rows: Sequence[StoredServerKey], wanted: Mapping[str, int], minimum_all: int, now: int
) -> bool:
    if not rows:
        return True
    if not wanted and all(row.document_valid_until_ts < minimum_all for row in rows):
        return True
    by_key = {row.key_id: row for row in rows}
    for key_id, minimum in wanted.items():
        row = by_key.get(key_id)
        if row is None or row.document_valid_until_ts < (minimum or now):
            return True
    newest = max(rows, key=lambda r: r.fetched_ts)
    half_life = newest.fetched_ts + (newest.document_valid_until_ts - newest.fetched_ts) // 2
    return now >= half_life
