"""Server-side key backups: ``/room_keys/version`` and ``/room_keys/keys``."""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.events.model import JsonDict
from homeserver.types import Requester
from storage.key_backup import (
    BackupVersion,
    KeyBackupStore,
    RoomKey,
    UnknownBackupVersion,
    WrongBackupVersion,
)


def _unknown_version() -> MatrixError:
    return not_found("Unknown backup version")


def _version_json(info: BackupVersion) -> JsonDict:
    return {
        "algorithm": info.algorithm,
        "auth_data": info.auth_data,
        "count": info.count,
        "etag": info.etag,
        "version": info.version,
    }


def _check_version_body(body: JsonDict) -> tuple[str, JsonDict]:
    algorithm = body.get("algorithm")
    if not isinstance(algorithm, str) or not algorithm:
        raise bad_json("'algorithm' must be a string")
    auth_data = body.get("auth_data")
    if not isinstance(auth_data, dict):
        raise bad_json("'auth_data' must be an object")
    return algorithm, auth_data


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_key(room_id: str, session_id: str, data: Any) -> RoomKey:
    where = f"key for session {session_id!r} in {room_id!r}"
    if not isinstance(data, dict):
        raise bad_json(f"The {where} must be an object")
    first, forwarded = data.get("first_message_index"), data.get("forwarded_count")
    verified, session_data = data.get("is_verified"), data.get("session_data")
    if not isinstance(first, int) or not isinstance(forwarded, int):
        raise bad_json(f"The {where} needs integer first_message_index and forwarded_count")
    if not _is_count(first) or not _is_count(forwarded):
        raise bad_json(f"The {where} needs integer first_message_index and forwarded_count")
    if not isinstance(verified, bool):
        raise bad_json(f"The {where} needs a boolean is_verified")
    if not isinstance(session_data, dict):
        raise bad_json(f"The {where} needs an object session_data")
    return RoomKey(room_id, session_id, first, forwarded, verified, session_data)


class KeyBackupHandler:
    def __init__(self, store: KeyBackupStore) -> None:
        self.store = store

    # --- versions --------------------------------------------------------------------------

    async def create_version(self, requester: Requester, body: JsonDict) -> JsonDict:
        algorithm, auth_data = _check_version_body(body)
        version = await self.store.create_version(requester.user_id, algorithm, auth_data)
        return {"version": version}

    async def get_version(self, requester: Requester, version: str | None) -> JsonDict:
        info = await self.store.get_version(requester.user_id, version)
        if info is None:
            raise not_found("No backup found" if version is None else "Unknown backup version")
        return _version_json(info)

    async def update_version(self, requester: Requester, version: str, body: JsonDict) -> None:
        algorithm, auth_data = _check_version_body(body)
        if "version" in body and body["version"] != version:
            raise invalid_param("The version in the body does not match the path")
        try:
            await self.store.update_version(requester.user_id, version, algorithm, auth_data)
        except UnknownBackupVersion:
            raise _unknown_version() from None
        except ValueError as e:
            raise invalid_param(str(e)) from None

    async def delete_version(self, requester: Requester, version: str) -> None:
        if not await self.store.delete_version(requester.user_id, version):
            raise _unknown_version()

    # --- keys ------------------------------------------------------------------------------

    async def put_keys(
        self,
        requester: Requester,
        version: str | None,
        room_id: str | None,
        session_id: str | None,
        body: JsonDict,
    ) -> JsonDict:
        version = _required_version(version)
        keys: list[RoomKey] = []
        if session_id is not None:
            assert room_id is not None
            keys.append(_parse_key(room_id, session_id, body))
        else:
            rooms = {room_id: body} if room_id is not None else body.get("rooms")
            if not isinstance(rooms, dict):
                raise bad_json("'rooms' must map room IDs to sessions")
            for rid, room in rooms.items():
                sessions = room.get("sessions") if isinstance(room, dict) else None
                if not isinstance(sessions, dict):
                    raise bad_json(f"'sessions' of {rid!r} must map session IDs to keys")
                keys.extend(_parse_key(rid, sid, data) for sid, data in sessions.items())
        try:
            etag, count = await self.store.put_keys(requester.user_id, version, keys)
        except UnknownBackupVersion:
            raise _unknown_version() from None
        except WrongBackupVersion as e:
            raise MatrixError(
                403,
                "M_WRONG_ROOM_KEYS_VERSION",
                "Wrong backup version.",
                current_version=e.current_version,
            ) from None
        return {"etag": etag, "count": count}

    async def get_keys(
        self,
        requester: Requester,
        version: str | None,
        room_id: str | None,
        session_id: str | None,
    ) -> JsonDict:
        version = _required_version(version)
        try:
            keys = await self.store.get_keys(requester.user_id, version, room_id, session_id)
        except UnknownBackupVersion:
            raise _unknown_version() from None
        if session_id is not None:
            if not keys:
                raise not_found("No room_keys found")
            return keys[0].to_json()
        if room_id is not None:
            return {"sessions": {k.session_id: k.to_json() for k in keys}}
        rooms: JsonDict = {}
        for key in keys:
            rooms.setdefault(key.room_id, {"sessions": {}})["sessions"][key.session_id] = (
                key.to_json()
            )
        return {"rooms": rooms}

    async def delete_keys(
        self,
        requester: Requester,
        version: str | None,
        room_id: str | None,
        session_id: str | None,
    ) -> JsonDict:
        version = _required_version(version)
        try:
            etag, count = await self.store.delete_keys(
                requester.user_id, version, room_id, session_id
            )
        except UnknownBackupVersion:
            raise _unknown_version() from None
        return {"etag": etag, "count": count}


def _required_version(version: str | None) -> str:
    if version is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'version' query parameter")
    return version
