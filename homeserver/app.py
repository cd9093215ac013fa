"""Wiring of the whole server by explicit construction: config in, listening server out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError

from federation.acl import ServerAclChecker
from federation.backfill import Backfiller
from federation.client import FederationClient
from federation.discovery import SystemResolver
from federation.e2e import FederationRemoteKeys
from federation.edus import FederationEdus
from federation.event_server import FederationEventServer
from federation.fetcher import RemoteEventFetcher
from federation.inbound import FederationEventHandler
from federation.ip_filter import IPFilter
from federation.keyring import Keyring
from federation.media import FederationMediaFetcher
from federation.membership import RemoteMembership, ResidentMembership
from federation.queries import FederationQueries
from federation.ratelimit import FederationRateLimiter
from federation.sender import FederationSender
from federation.transport import events as federation_events
from federation.transport import keys as federation_keys
from federation.transport import media as federation_media
from federation.transport import membership as federation_membership
from federation.transport import public_rooms as federation_public_rooms
from federation.transport import queries as federation_queries
from federation.transport import send as federation_send
from federation.transport import user_keys as federation_user_keys
from federation.transport import version as federation_version
from federation.transport.auth import FederationAuthenticator
from homeserver.account_services import AccountServices
from homeserver.config import HomeserverConfig, ListenerConfig
from homeserver.e2e_services import E2EServices
from homeserver.handlers.account_data import AccountDataHandler
from homeserver.handlers.capabilities import CapabilitiesHandler
from homeserver.handlers.directory import DirectoryHandler
from homeserver.handlers.event_creation import EventCreator
from homeserver.handlers.filters import FilterHandler
from homeserver.handlers.ignored_users import IgnoredUsers
from homeserver.handlers.notification_counts import NotificationCounter
from homeserver.handlers.pagination import PaginationHandler
from homeserver.handlers.presence import PresenceHandler
from homeserver.handlers.profile import NoRoomsYet
from homeserver.handlers.push_rules import PushRulesHandler
from homeserver.handlers.read_markers import ReadMarkersHandler
from homeserver.handlers.receipts import ReceiptsHandler
from homeserver.handlers.relations import RelationsHandler
from homeserver.handlers.serialize import EventSerializer
from homeserver.handlers.sync import SyncHandler, SyncSections
from homeserver.handlers.typing import TypingHandler
from homeserver.handlers.voip import VoipHandler
from homeserver.media.paths import MediaPaths
from homeserver.media.repository import MediaRepository
from homeserver.media.retention import MediaHousekeeping
from homeserver.media.url_preview import UrlPreviewer
from homeserver.notifier import Notifier
from homeserver.ratelimit import Ratelimiter
from homeserver.room_services import RoomServices
from homeserver.server_keys import ServerKeys, load_signing_keys
from homeserver.tls import load_tls
from rest import accounts as account_routes
from rest import health, well_known
from rest import media as media_routes
from rest import metrics as metrics_resource
from rest.client import account_data as account_data_routes
from rest.client import capabilities as capabilities_routes
from rest.client import context as context_routes
from rest.client import directory as directory_routes
from rest.client import filters as filter_routes
from rest.client import keys as key_routes
from rest.client import messages as messages_routes
from rest.client import notifications as notification_routes
from rest.client import presence as presence_routes
from rest.client import push_rules as push_rule_routes
from rest.client import read_markers as read_marker_routes
from rest.client import receipts as receipt_routes
from rest.client import relations as relation_routes
from rest.client import room_keys as room_key_routes
from rest.client import rooms as room_routes
from rest.client import sync as sync_routes
from rest.client import tags as tag_routes
from rest.client import to_device as to_device_routes
from rest.client import typing as typing_routes
from rest.client import versions
from rest.client import voip as voip_routes
from rest.key import server as key_server
from rest.router import Auth, Router
from rest.server import DEFAULT_MAX_BODY_SIZE, HearthSite, InFlightRequests, MatrixResource
from storage.account_data import AccountDataStore
from storage.directory import DirectoryStore
from storage.engine import Database, create_database
from storage.events import EventStore
from storage.federation_history import FederationHistoryStore
from storage.federation_sender import FederationSenderStore
from storage.filters import FilterStore
from storage.media import MediaStore
from storage.presence import PresenceStore
from storage.push_actions import PushActionStore
from storage.push_rules import PushRuleStore
from storage.receipts import ReceiptStore
from storage.relations import RelationsStore
from storage.room_history import RoomHistoryStore
from storage.schema import prepare_database
from storage.server_keys import ServerKeyStore
from storage.sync import SyncStore

if TYPE_CHECKING:
    from twisted.internet.ssl import CertificateOptions

logger = logging.getLogger(__name__)

# How long shutdown waits for in-flight requests before closing the database anyway.
SHUTDOWN_GRACE_SECONDS = 30.0


class StartupError(Exception):
    """Start-up cannot go on; ``str()`` is the one line shown to the admin."""


class Homeserver:
    def __init__(self, config: HomeserverConfig, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.server_keys = ServerKeys(
            server_name=config.server_name,
            signing_keys=load_signing_keys(config.signing_key_path),
            old_signing_keys=config.old_signing_keys,
            key_refresh_interval_ms=config.key_refresh_interval_ms,
        )
        self.ratelimiters = {
            name: Ratelimiter(limit.per_second, limit.burst_count, reactor.seconds)
            for name, limit in config.ratelimits.items()
        }
        self.in_flight = InFlightRequests()
        # Connects lazily: nothing touches the database before start().
        self.database: Database | None = create_database(config.database, reactor)
        self.database.leave_closing_to_owner()  # stop() closes it, after the last writes
        # Accounts, devices, profiles and the access-token authenticator. NoRoomsYet: profile
        # changes and deactivations do not reach room memberships until the rooms core does.
        self.accounts = AccountServices(
            config, self.database, reactor, self.ratelimiters, self.now_ms, NoRoomsYet()
        )
        self.notifier = Notifier(reactor)
        self.event_store = EventStore(self.database)
        self.event_creator = EventCreator(
            server_name=config.server_name,
            signing_key=self.server_keys.signing_key,
            store=self.event_store,
            notifier=self.notifier,
            now_ms=self.now_ms,
        )
        # Federation foundation: signed outbound requests (discovery, TLS, IP ranges), other
        # servers' keys (fetched, cached, served as a notary), inbound X-Matrix auth, and the
        # per-origin rc_federation limiter for inbound work.
        self.federation_client = FederationClient(
            reactor,
            config.server_name,
            self.server_keys.signing_key,
            resolver=SystemResolver(reactor),
            ip_filter=IPFilter(config.ip_range_blacklist, config.ip_range_whitelist),
            verify_certificates=config.federation_verify_certificates,
            domain_whitelist=config.federation_domain_whitelist,
        )
        self.keyring = Keyring(
            self.server_keys,
            ServerKeyStore(self.database),
            self.federation_client,
            config.trusted_key_servers,
            self.now_ms,
            verify_certificates=config.federation_verify_certificates,
        )
        self.federation_authenticator = FederationAuthenticator(
            config.server_name, self.keyring, self.now_ms, config.federation_domain_whitelist
        )
        self.federation_ratelimiter = FederationRateLimiter(config.rc_federation, reactor)
        # Events both ways: received PDUs go through the spec's checks into the same store
        # (under the same per-room lock as local events); our own events are queued per
        # destination and sent in transactions.
        self.federation_event_handler = FederationEventHandler(
            store=self.event_store,
            notifier=self.notifier,
            room_locks=self.event_creator.room_locks,
            keys=self.keyring,
            fetcher=RemoteEventFetcher(self.federation_client),
            now_ms=self.now_ms,
        )
        self.transaction_handler = federation_send.TransactionHandler(self.federation_event_handler)
        self.federation_sender = FederationSender(
            server_name=config.server_name,
            store=self.event_store,
            sender_store=FederationSenderStore(self.database),
            transport=self.federation_client,
            reactor=reactor,
        )
        self.notifier.add_listener(self.federation_sender.on_new_room_events)
        self.transaction_handler.on_origin_seen = self.federation_sender.wake_destination
        # Rooms' server ACLs, enforced on every room-scoped federation request and per
        # PDU/EDU of a transaction.
        self.server_acls = ServerAclChecker(self.event_store)
        self.federation_authenticator.acl = self.server_acls
        self.transaction_handler.acl = self.server_acls
        self.directory_store = DirectoryStore(self.database, self.now_ms)
        # Aliases and the room directory; /createRoom and /join/{alias} use it too.
        self.directory_handler = DirectoryHandler(
            server_name=config.server_name,
            store=self.directory_store,
            event_store=self.event_store,
            event_creator=self.event_creator,
            require_membership_for_aliases=config.require_membership_for_aliases,
            enable_room_list_search=config.enable_room_list_search,
            is_server_admin=self.accounts.authenticator.is_admin,
        )
        self.capabilities_handler = CapabilitiesHandler(
            default_room_version=config.default_room_version,
            change_password_enabled=config.accounts.password_reauth_enabled,
            set_displayname_enabled=config.enable_set_displayname,
            set_avatar_url_enabled=config.enable_set_avatar_url,
        )
        self.voip_handler = VoipHandler(config.turn, self.now_ms)
        # Room history (/messages, /context), visibility checks, client event format, filters.
        self.room_history_store = RoomHistoryStore(self.database, self.event_store)
        self.event_serializer = EventSerializer(
            self.event_store, self.room_history_store, self.now_ms
        )
        self.pagination_handler = PaginationHandler(
            self.event_store, self.room_history_store, self.event_serializer
        )
        # Relations and threads; every event served through the serializer carries their
        # bundled aggregations (unsigned.m.relations).
        self.relations_handler = RelationsHandler(
            self.event_store,
            self.room_history_store,
            RelationsStore(self.database),
            self.event_serializer,
        )
        self.event_serializer.set_aggregation_provider(self.relations_handler)
        self.filter_handler = FilterHandler(FilterStore(self.database), config.server_name)
        # Rooms: creation, membership, state, sending, upgrades; profile changes and
        # deactivations reach the member events through it (replacing NoRoomsYet).
        self.rooms = RoomServices(
            server_name=config.server_name,
            default_room_version=config.default_room_version,
            database=self.database,
            event_store=self.event_store,
            event_creator=self.event_creator,
            directory=self.directory_handler,
            directory_store=self.directory_store,
            profiles=self.accounts.profile_store,
            history_store=self.room_history_store,
            serializer=self.event_serializer,
            now_ms=self.now_ms,
        )
        self.accounts.set_membership_sync(self.rooms.membership_sync)
        self.rooms.send.validate_relation = self.relations_handler.validate_new_relation
        # Joining, knocking, leaving and inviting across servers; remote alias lookups.
        membership_parts: dict[str, Any] = {
            "server_name": config.server_name,
            "signing_key": self.server_keys.signing_key,
            "store": self.event_store,
            "notifier": self.notifier,
            "room_locks": self.event_creator.room_locks,
            "events": self.federation_event_handler,
            "now_ms": self.now_ms,
        }
        self.remote_membership = RemoteMembership(client=self.federation_client, **membership_parts)
        self.resident_membership = ResidentMembership(
            event_creator=self.event_creator, **membership_parts
        )
        self.resident_membership.forward = self.federation_sender.forward_room_events
        self.rooms.membership.federation = self.remote_membership
        self.directory_handler.remote_alias_query = self.remote_membership.query_alias
        # /sync; the modules owning typing, receipts, account data, presence, push counts
        # and device messages add their providers to sync_sections.
        self.sync_sections = SyncSections()
        self.sync_handler = SyncHandler(
            store=self.event_store,
            history=self.room_history_store,
            sync_store=SyncStore(self.database),
            serializer=self.event_serializer,
            notifier=self.notifier,
            sections=self.sync_sections,
        )
        # Push rules, and the unread counts worked out from them as each event lands.
        self.push_rules = PushRulesHandler(PushRuleStore(self.database), self.notifier)
        self.notification_counter = NotificationCounter(
            server_name=config.server_name,
            event_store=self.event_store,
            store=PushActionStore(self.database),
            push_rules=self.push_rules,
            serializer=self.event_serializer,
            now_ms=self.now_ms,
        )
        self.notifier.add_listener(self.notification_counter.on_new_room_events)
        self.sync_sections.streams.append(self.push_rules)
        self.sync_sections.global_account_data.append(self.push_rules.sync_account_data)
        self.sync_sections.unread_counts = self.notification_counter.get_unread_counts
        # Typing, receipts, read markers, account data and tags, presence, ignored users:
        # the per-user and ephemeral streams /sync serves.
        self.presence_handler = PresenceHandler(
            store=PresenceStore(self.database),
            notifier=self.notifier,
            clock=reactor,
            now_ms=self.now_ms,
            settings=config.presence,
            get_rooms_for_user=self.event_store.get_rooms_for_user,
            server_name=config.server_name,
        )
        self.typing_handler = TypingHandler(
            event_store=self.event_store,
            notifier=self.notifier,
            clock=reactor,
            bump_active=self.presence_handler.bump_active,
        )
        self.account_data_handler = AccountDataHandler(
            store=AccountDataStore(self.database), notifier=self.notifier
        )
        self.account_data_handler.push_rules_source = self.push_rules.get_push_rules_for_user
        self.ignored_users = IgnoredUsers(self.account_data_handler.store)
        self.pagination_handler.ignored_users = self.ignored_users.get_ignored_users
        self.receipts_handler = ReceiptsHandler(
            store=ReceiptStore(self.database),
            event_store=self.event_store,
            notifier=self.notifier,
            now_ms=self.now_ms,
            bump_active=self.presence_handler.bump_active,
        )
        self.read_markers_handler = ReadMarkersHandler(
            event_store=self.event_store,
            account_data=self.account_data_handler,
            receipts=self.receipts_handler,
        )
        self.sync_sections.streams.extend(
            [
                self.typing_handler,
                self.receipts_handler,
                self.account_data_handler,
                self.presence_handler,
            ]
        )
        self.sync_sections.ephemeral.extend(
            [self.typing_handler.sync_ephemeral, self.receipts_handler.sync_ephemeral]
        )
        self.sync_sections.global_account_data.append(self.account_data_handler.sync_global)
        self.sync_sections.room_account_data.append(self.account_data_handler.sync_rooms)
        self.sync_sections.presence = self.presence_handler.sync_presence
        self.sync_sections.ignored_users = self.ignored_users.get_ignored_users
        self.relations_handler.set_ignored_users(self.ignored_users.get_ignored_users)
        # End-to-end encryption: keys, cross-signing, to-device, device lists, key backup.
        self.e2e = E2EServices(
            server_name=config.server_name,
            database=self.database,
            notifier=self.notifier,
            accounts=self.accounts.account_store,
            devices=self.accounts.device_store,
            uia=self.accounts.uia,
            room_position=lambda: self.event_store.stream_ids.current_token(),
            now_ms=self.now_ms,
        )
        self.e2e.add_sync_sections(self.sync_sections)
        # The media repository: uploads, downloads, thumbnails, URL previews, retention.
        self.media = MediaRepository(
            server_name=config.server_name,
            config=config.media,
            max_upload_size=config.max_upload_size,
            store=MediaStore(self.database),
            paths=MediaPaths(config.media_store_path),
            reactor=reactor,
            now_ms=self.now_ms,
            public_baseurl=config.public_baseurl,
        )
        self.url_previewer = (
            UrlPreviewer(config.media, self.media, reactor, self.now_ms)
            if config.media.url_preview_enabled
            else None
        )
        self.media_housekeeping = MediaHousekeeping(self.media, reactor)
        # EDUs over federation (typing, receipts, presence, to-device, device lists and
        # cross-signing keys), other servers' users' keys for E2EE, other servers' media.
        self.federation_edus = FederationEdus(
            server_name=config.server_name,
            sender=self.federation_sender,
            get_joined_servers=self.federation_sender.sender_store.get_joined_servers,
            get_users_sharing_room=self.e2e.device_list_store.get_users_sharing_room,
            typing=self.typing_handler,
            receipts=self.receipts_handler,
            presence=self.presence_handler,
            to_device_store=self.e2e.to_device_store,
            notifier=self.notifier,
            reactor=reactor,
            now_ms=self.now_ms,
        )
        self.federation_edus.register(self.transaction_handler)
        self.remote_keys = FederationRemoteKeys(
            server_name=config.server_name,
            client=self.federation_client,
            edus=self.federation_edus,
            e2e=self.e2e,
            devices=self.accounts.device_store,
        )
        self.remote_keys.install()
        self.remote_keys.register(self.transaction_handler)
        self.user_keys_servlet = federation_user_keys.UserKeysServlet(
            config.server_name, self.e2e.key_store, self.remote_keys.store
        )
        self.media.remote = FederationMediaFetcher(
            client=self.federation_client,
            store=self.media.store,
            paths=self.media.paths,
            files=self.media.files,
            max_size=config.max_upload_size,
            authenticated=config.media.enable_authenticated_media,
            now_ms=self.now_ms,
        )
        # Reading rooms across servers: events, state and history served to the servers
        # in a room (visibility applied per server); backfill for our readers; profile,
        # room list and timestamp queries to other servers.
        self.federation_history = FederationHistoryStore(self.database)
        self.federation_event_server = FederationEventServer(
            server_name=config.server_name,
            store=self.event_store,
            history=self.room_history_store,
            federation_history=self.federation_history,
            serializer=self.event_serializer,
            now_ms=self.now_ms,
        )
        self.federation_event_server.acl = self.server_acls
        self.federation_queries = FederationQueries(self.federation_client)
        self.backfiller = Backfiller(
            server_name=config.server_name,
            store=self.event_store,
            federation_history=self.federation_history,
            client=self.federation_client,
            events=self.federation_event_handler,
            queries=self.federation_queries,
            now_ms=self.now_ms,
        )
        self.pagination_handler.remote = self.backfiller
        self.accounts.profiles.remote = self.federation_queries
        self.directory_handler.remote_public_rooms = self.federation_queries.public_rooms
        self.listening_ports: list[Any] = []  # IListeningPort
        self.sites: list[HearthSite] = []
        # The port each listener actually bound, in config order (useful with port 0).
        self.bound_ports: list[int] = []

    def now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    def build_router(self, listener: ListenerConfig) -> Router:
        router = Router()
        resources = listener.resources
        health.register(router)  # served on every listener, as Synapse does
        if "client" in resources:
            versions.register(router)
            well_known.register(router, self.config)
            account_routes.register(router, self.accounts)
            directory_routes.register(
                router,
                self.directory_handler,
                allow_public_rooms_without_auth=self.config.allow_public_rooms_without_auth,
            )
            capabilities_routes.register(router, self.capabilities_handler)
            voip_routes.register(router, self.voip_handler)
            messages_routes.register(router, self.pagination_handler)
            typing_routes.register(router, self.typing_handler)
            receipt_routes.register(router, self.receipts_handler)
            read_marker_routes.register(router, self.read_markers_handler)
            account_data_routes.register(router, self.account_data_handler)
            tag_routes.register(router, self.account_data_handler)
            presence_routes.register(router, self.presence_handler)
            context_routes.register(router, self.pagination_handler)
            relation_routes.register(router, self.relations_handler)
            filter_routes.register(router, self.filter_handler)
            room_routes.register_all(router, self.rooms, self.ratelimiters)
            sync_routes.register(
                router, self.sync_handler, self.filter_handler, self.presence_handler
            )
            push_rule_routes.register(router, self.push_rules)
            notification_routes.register(router, self.notification_counter)
            key_routes.register(router, self.e2e.keys, self.e2e.cross_signing)
            to_device_routes.register(router, self.e2e.to_device)
            room_key_routes.register(router, self.e2e.key_backup)
        if "client" in resources or "media" in resources:
            # As Synapse: media is served wherever the client API is.
            media_routes.register(
                router, self.media, self.url_previewer, self.accounts.authenticator.is_admin
            )
        if "federation" in resources:
            federation_version.register(router)
            federation_send.register(router, self.transaction_handler)
            federation_membership.register(
                router,
                self.resident_membership,
                self.directory_handler,
                self.federation_ratelimiter,
            )
            federation_user_keys.register(
                router, self.federation_ratelimiter, self.user_keys_servlet
            )
            federation_media.register(router, self.federation_ratelimiter, self.media)
            federation_events.register(
                router, self.federation_event_server, self.federation_ratelimiter
            )
            federation_queries.register(
                router,
                server_name=self.config.server_name,
                profiles=self.accounts.profiles,
                limiter=self.federation_ratelimiter,
            )
            federation_public_rooms.register(
                router,
                self.directory_handler,
                enabled=self.config.allow_public_rooms_over_federation,
                limiter=self.federation_ratelimiter,
            )
        if "federation" in resources or "keys" in resources:
            key_server.register(router, self.server_keys, self.now_ms)
            federation_keys.register(router, self.keyring)
        if "metrics" in resources:
            metrics_resource.register(router)
        return router

    async def start(self) -> None:
        database = self.database
        assert database is not None, "a stopped Homeserver cannot start again"
        try:
            await prepare_database(database)
            await self.event_store.load_positions()
            await self.push_rules.store.load_positions()
            await self.receipts_handler.store.load_positions()
            await self.account_data_handler.store.load_positions()
            await self.presence_handler.load_positions()
            await self.e2e.load_positions()
        except Exception as e:
            await database.close()
            self.database = None
            raise StartupError(f"cannot prepare the database: {e}") from e
        try:
            self.media.prepare()
        except OSError as e:
            await database.close()
            self.database = None
            raise StartupError(
                f"config key 'media_store_path' has value '{self.config.media_store_path}': "
                f"expected a writable folder ({e.strerror})"
            ) from None
        self.media_housekeeping.start()
        await self.federation_sender.start()
        try:
            for listener in self.config.listeners:
                self.bound_ports.append(self._listen(listener))
        except Exception:
            await self.stop()
            raise
        logger.info("Hearth serving %s on ports %s", self.config.server_name, self.bound_ports)

    def _listen(self, listener: ListenerConfig) -> int:
        if listener.type not in ("http", "metrics"):
            logger.warning("listener type %r is not served by Hearth; skipped", listener.type)
            return listener.port
        resource = MatrixResource(
            self.build_router(listener),
            clock=self.reactor,
            authenticators={
                Auth.USER: self.accounts.authenticator.authenticate,
                Auth.OPTIONAL: self.accounts.authenticator.authenticate,
                Auth.FEDERATION: self.federation_authenticator.authenticate,
            },
            ratelimiters=self.ratelimiters,
            in_flight=self.in_flight,
            x_forwarded=listener.x_forwarded,
        )
        max_body = max(DEFAULT_MAX_BODY_SIZE, self.config.max_upload_size)
        site = HearthSite(resource, max_body_size=max_body, reactor=self.reactor)
        site.displayTracebacks = False
        self.sites.append(site)
        context = self._tls_context() if listener.tls else None
        port = listener.port
        bound_any = False
        for address in listener.bind_addresses:
            try:
                if context is not None:
                    listening = self.reactor.listenSSL(port, site, context, interface=address)
                else:
                    listening = self.reactor.listenTCP(port, site, interface=address)
            except CannotListenError as e:
                # On dual-stack hosts "::" already takes the IPv4 port; as Synapse, go on.
                if bound_any and address == "0.0.0.0":
                    continue
                raise StartupError(
                    f"cannot listen on {address} port {port}: {e.socketError}"
                ) from None
            bound_any = True
            self.listening_ports.append(listening)
            port = listening.getHost().port  # later addresses share a random port's number
        return port

    def _tls_context(self) -> CertificateOptions:
        load_tls()
        from twisted.internet import ssl

        cert_path = self.config.tls_certificate_path
        key_path = self.config.tls_private_key_path
        assert cert_path is not None and key_path is not None  # checked by the config loader
        try:
            pem = cert_path.read_bytes() + b"\n" + key_path.read_bytes()
            certificate = ssl.PrivateCertificate.loadPEM(pem)
        except Exception as e:
            raise StartupError(
                f"config key 'tls_certificate_path' has value '{cert_path}': expected a PEM "
                f"certificate matching 'tls_private_key_path' ({e})"
            ) from None
        options: CertificateOptions = certificate.options()
        return options

    async def stop(self) -> None:
        """Stop listening, let in-flight requests and transactions finish, close the database."""
        ports, self.listening_ports = self.listening_ports, []
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
        # Requests already running finish; any new one on a kept-alive connection is
        # refused with 503 so its sender retries later rather than think it was handled.
        self.in_flight.closing = True
        self.notifier.wake_all()  # long-polls answer now rather than hold up shutdown
        self.federation_sender.stop()
        self.federation_edus.stop()
        self.presence_handler.stop()
        self.typing_handler.stop()
        if self.in_flight.count:
            logger.info("waiting for %d in-flight requests", self.in_flight.count)
            idle = self.in_flight.wait_idle()
            idle.addTimeout(SHUTDOWN_GRACE_SECONDS, self.reactor)
            try:
                await idle
            except defer.TimeoutError:
                logger.warning("requests still running after %ss", SHUTDOWN_GRACE_SECONDS)
        for site in self.sites:
            site.close_connections()
        await self.notification_counter.drain()
        await self.federation_client.close()
        if self.database is not None:
            await self.media_housekeeping.stop()
            await self.accounts.stop()
            database, self.database = self.database, None
            await database.close()
