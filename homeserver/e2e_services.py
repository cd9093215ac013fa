"""End-to-end encryption support, wired by explicit construction: device keys, one-time
and fallback keys, cross-signing, the device list and to-device streams, key backups.

Other servers are reached through ``remote`` (a ``RemoteKeys``); until federation lands,
``LocalOnlyRemoteKeys`` reports them unavailable.
"""

from __future__ import annotations

from collections.abc import Callable

from homeserver.handlers.cross_signing import CrossSigningHandler
from homeserver.handlers.device_lists import DeviceListHandler
from homeserver.handlers.e2e_keys import E2EKeysHandler
from homeserver.handlers.key_backup import KeyBackupHandler
from homeserver.handlers.remote_keys import LocalOnlyRemoteKeys, RemoteKeys
from homeserver.handlers.sync import SyncSections
from homeserver.handlers.to_device import ToDeviceHandler
from homeserver.handlers.uia import UserInteractiveAuth
from homeserver.notifier import Notifier
from storage.accounts import AccountStore
from storage.device_lists import DeviceListStore
from storage.devices import DeviceStore
from storage.e2e_keys import DeviceKeysCleanup, E2EKeyStore
from storage.engine import Database
from storage.key_backup import KeyBackupStore
from storage.to_device import ToDeviceStore


class E2EServices:
    def __init__(
        self,
        *,
        server_name: str,
        database: Database,
        notifier: Notifier,
        accounts: AccountStore,
        devices: DeviceStore,
        uia: UserInteractiveAuth,
        room_position: Callable[[], int],
        now_ms: Callable[[], int],
        remote: RemoteKeys | None = None,
    ) -> None:
        self.remote: RemoteKeys = remote or LocalOnlyRemoteKeys()
        self.device_list_store = DeviceListStore(database)
        self.key_store = E2EKeyStore(database, self.device_list_store)
        self.to_device_store = ToDeviceStore(database)
        self.device_lists = DeviceListHandler(
            server_name=server_name,
            store=self.device_list_store,
            keys=self.key_store,
            notifier=notifier,
            remote=self.remote,
            room_position=room_position,
        )
        self.keys = E2EKeysHandler(
            server_name=server_name,
            store=self.key_store,
            device_lists=self.device_lists,
            remote=self.remote,
            now_ms=now_ms,
        )
        self.cross_signing = CrossSigningHandler(
            store=self.key_store,
            devices=devices,
            device_lists=self.device_lists,
            uia=uia,
            is_mine=self.keys.is_mine,
        )
        self.to_device = ToDeviceHandler(
            server_name=server_name,
            store=self.to_device_store,
            notifier=notifier,
            remote=self.remote,
            now_ms=now_ms,
        )
        self.key_backup = KeyBackupHandler(KeyBackupStore(database))
        # Deleting a device (logout, /delete_devices, deactivation...) takes its keys and
        # pending messages with it, in the same transaction, as a device list change.
        cleanup = DeviceKeysCleanup(self.device_list_store)
        cleanup.on_change = self.device_lists.notify_change_soon
        accounts.devices_deleted = cleanup

    def add_sync_sections(self, sections: SyncSections) -> None:
        sections.streams.extend([self.to_device_store, self.device_list_store])
        sections.device_sections.extend(
            [self.to_device.sync_section, self.device_lists.sync_section]
        )

    async def load_positions(self) -> None:
        await self.device_list_store.load_positions()
        await self.to_device_store.load_positions()
