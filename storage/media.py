"""Media metadata: local uploads, cached remote media and their thumbnails (0007).

The bytes live on disk (``homeserver.media.files``); these rows say what each file is,
who uploaded it, and when it was last used.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from storage.engine import Cursor, Database

_LOCAL_COLUMNS = (
    "media_id, user_id, created_ts, media_type, media_length, upload_name, sha256,"
    " last_access_ts, quarantined_by, safe_from_quarantine, authenticated, url_cache"
)
_REMOTE_COLUMNS = (
    "media_origin, media_id, media_type, media_length, upload_name, created_ts,"
    " last_access_ts, filesystem_id, quarantined_by, authenticated, sha256"
)
# Bound on the IDs a single statement names, well under both engines' parameter limits.
_BATCH = 500


@dataclass(frozen=True, slots=True)
class LocalMedia:
    media_id: str
    user_id: str
    created_ts: int
    media_type: str | None  # None (with media_length) until the content is uploaded
    media_length: int | None
    upload_name: str | None
    sha256: str | None
    last_access_ts: int | None
    quarantined_by: str | None
    safe_from_quarantine: bool
    authenticated: bool
    url_cache: str | None

    @property
    def uploaded(self) -> bool:
        return self.media_length is not None


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    media_origin: str
    media_id: str
    media_type: str | None
    media_length: int | None
    upload_name: str | None
    created_ts: int
    last_access_ts: int | None
    filesystem_id: str
    quarantined_by: str | None
    authenticated: bool
    sha256: str | None


@dataclass(frozen=True, slots=True)
class ThumbnailInfo:
    width: int
    height: int
    method: str
    type: str
    length: int


def _local(row: tuple[object, ...]) -> LocalMedia:
    return LocalMedia(
        media_id=str(row[0]),
        user_id=str(row[1]),
        created_ts=int(row[2]),  # type: ignore[call-overload]
        media_type=None if row[3] is None else str(row[3]),
        media_length=None if row[4] is None else int(row[4]),  # type: ignore[call-overload]
        upload_name=None if row[5] is None else str(row[5]),
        sha256=None if row[6] is None else str(row[6]),
        last_access_ts=None if row[7] is None else int(row[7]),  # type: ignore[call-overload]
        quarantined_by=None if row[8] is None else str(row[8]),
        safe_from_quarantine=bool(row[9]),
        authenticated=bool(row[10]),
        url_cache=None if row[11] is None else str(row[11]),
    )


def _remote(row: tuple[object, ...]) -> RemoteMedia:
    return RemoteMedia(
        media_origin=str(row[0]),
        media_id=str(row[1]),
        media_type=None if row[2] is None else str(row[2]),
        media_length=None if row[3] is None else int(row[3]),  # type: ignore[call-overload]
        upload_name=None if row[4] is None else str(row[4]),
        created_ts=int(row[5]),  # type: ignore[call-overload]
        last_access_ts=None if row[6] is None else int(row[6]),  # type: ignore[call-overload]
        filesystem_id=str(row[7]),
        quarantined_by=None if row[8] is None else str(row[8]),
        authenticated=bool(row[9]),
        sha256=None if row[10] is None else str(row[10]),
    )


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- local media ---------------------------------------------------------------------

    async def reserve_media_id(
        self, media_id: str, user_id: str, now_ms: int, authenticated: bool
    ) -> None:
        """A media ID with no content yet (POST /create)."""
        await self.db.execute(
            "reserve_media_id",
            "INSERT INTO local_media (media_id, user_id, created_ts, authenticated)"
            " VALUES (?, ?, ?, ?)",
            media_id,
            user_id,
            now_ms,
            authenticated,
        )

    async def store_local_media(self, media: LocalMedia) -> None:
        await self.db.execute(
            "store_local_media",
            f"INSERT INTO local_media ({_LOCAL_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            media.media_id,
            media.user_id,
            media.created_ts,
            media.media_type,
            media.media_length,
            media.upload_name,
            media.sha256,
            media.last_access_ts,
            media.quarantined_by,
            media.safe_from_quarantine,
            media.authenticated,
            media.url_cache,
        )

    async def fill_reserved_media(
        self,
        media_id: str,
        media_type: str,
        media_length: int,
        upload_name: str | None,
        sha256: str,
        quarantined_by: str | None,
    ) -> bool:
        """Record the content of a reserved ID; False if it already had content."""

        def fill(cursor: Cursor) -> bool:
            cursor.execute(
                "UPDATE local_media SET media_type = ?, media_length = ?, upload_name = ?,"
                " sha256 = ?, quarantined_by = ? WHERE media_id = ? AND media_length IS NULL",
                (media_type, media_length, upload_name, sha256, quarantined_by, media_id),
            )
            return cursor.rowcount == 1

        return await self.db.run_interaction("fill_reserved_media", fill)

    async def get_local_media(self, media_id: str) -> LocalMedia | None:
        rows = await self.db.execute(
            "get_local_media",
            f"SELECT {_LOCAL_COLUMNS} FROM local_media WHERE media_id = ?",
            media_id,
        )
        return _local(rows[0]) if rows else None

    async def count_pending_media(self, user_id: str, created_after_ms: int) -> tuple[int, int]:
        """(reserved IDs still without content and not expired, oldest one's created_ts)."""
        rows = await self.db.execute(
            "count_pending_media",
            "SELECT COUNT(*), MIN(created_ts) FROM local_media"
            " WHERE user_id = ? AND created_ts > ? AND media_length IS NULL",
            user_id,
            created_after_ms,
        )
        count, oldest = rows[0]
        return int(count), int(oldest) if oldest is not None else 0

    async def uploaded_bytes_since(self, user_id: str, since_ms: int) -> int:
        rows = await self.db.execute(
            "uploaded_bytes_since",
            "SELECT COALESCE(SUM(media_length), 0) FROM local_media"
            " WHERE user_id = ? AND created_ts > ? AND media_length IS NOT NULL",
            user_id,
            since_ms,
        )
        return int(rows[0][0])

    async def is_hash_quarantined(self, sha256: str) -> bool:
        rows = await self.db.execute(
            "is_hash_quarantined",
            "SELECT 1 FROM local_media WHERE sha256 = ? AND quarantined_by IS NOT NULL"
            " UNION ALL SELECT 1 FROM remote_media_cache"
            " WHERE sha256 = ? AND quarantined_by IS NOT NULL",
            sha256,
            sha256,
        )
        return bool(rows)

    async def get_local_thumbnails(self, media_id: str) -> list[ThumbnailInfo]:
        rows = await self.db.execute(
            "get_local_thumbnails",
            "SELECT width, height, method, type, length FROM local_media_thumbnails"
            " WHERE media_id = ?",
            media_id,
        )
        return [ThumbnailInfo(int(w), int(h), str(m), str(t), int(n)) for w, h, m, t, n in rows]

    async def store_local_thumbnail(self, media_id: str, info: ThumbnailInfo) -> None:
        await self.db.execute(
            "store_local_thumbnail",
            "INSERT INTO local_media_thumbnails (media_id, width, height, method, type, length)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            media_id,
            info.width,
            info.height,
            info.method,
            info.type,
            info.length,
        )

    async def update_last_access(
        self, local: Mapping[str, int], remote: Mapping[tuple[str, str], int]
    ) -> None:
        """Record when media was last used: media_id -> ts, (origin, media_id) -> ts."""

        def update(cursor: Cursor) -> None:
            if local:
                cursor.executemany(
                    "UPDATE local_media SET last_access_ts = ? WHERE media_id = ?",
                    [(ts, media_id) for media_id, ts in sorted(local.items())],
                )
            if remote:
                cursor.executemany(
                    "UPDATE remote_media_cache SET last_access_ts = ?"
                    " WHERE media_origin = ? AND media_id = ?",
                    [(ts, o, m) for (o, m), ts in sorted(remote.items())],
                )

        await self.db.run_interaction("update_media_last_access", update)

    async def get_local_media_before(
        self,
        before_ts: int,
        *,
        keep_avatars_of: str | None,
        include_quarantined: bool = False,
        include_protected: bool = False,
    ) -> list[str]:
        """Local media last used (or, never used, created) before ``before_ts``.

        ``keep_avatars_of``: this server's name, to keep media in use as a user's profile
        avatar or a room's current avatar (what Synapse's retention keeps).
        """
        sql = (
            "SELECT media_id FROM local_media WHERE (last_access_ts < ?"
            " OR (last_access_ts IS NULL AND created_ts < ?))"
        )
        args: list[object] = [before_ts, before_ts]
        if not include_quarantined:
            sql += " AND quarantined_by IS NULL"
        if not include_protected:
            sql += " AND safe_from_quarantine = ?"
            args.append(False)
        if keep_avatars_of is not None:
            sql += (
                " AND NOT EXISTS (SELECT 1 FROM profiles"
                " WHERE profiles.avatar_url = ? || local_media.media_id)"
            )
            args.append(f"mxc://{keep_avatars_of}/")
        rows = await self.db.execute("get_local_media_before", sql, *args)
        media_ids = [str(row[0]) for row in rows]
        if keep_avatars_of is None or not media_ids:
            return media_ids
        in_use = await self._room_avatar_media(keep_avatars_of)
        return [media_id for media_id in media_ids if media_id not in in_use]

    async def _room_avatar_media(self, server_name: str) -> set[str]:
        """Local media IDs that are some room's current avatar."""
        rows = await self.db.execute(
            "get_room_avatar_urls",
            "SELECT e.json FROM current_state_events c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.avatar' AND c.state_key = ''",
        )
        prefix = f"mxc://{server_name}/"
        found = set()
        for (raw,) in rows:
            try:
                url = json.loads(raw).get("content", {}).get("url")
            except (ValueError, AttributeError):
                continue
            if isinstance(url, str) and url.startswith(prefix):
                found.add(url[len(prefix) :])
        return found

    async def delete_local_media_rows(self, media_ids: Collection[str]) -> None:
        """Forget these media and their thumbnails, in one transaction."""
        ids = sorted(media_ids)

        def delete(cursor: Cursor) -> None:
            for chunk in _chunks(ids):
                marks = ", ".join("?" for _ in chunk)
                cursor.execute(
                    f"DELETE FROM local_media_thumbnails WHERE media_id IN ({marks})", chunk
                )
                cursor.execute(f"DELETE FROM local_media WHERE media_id IN ({marks})", chunk)

        await self.db.run_interaction("delete_local_media", delete)

    async def set_local_quarantine(self, media_id: str, quarantined_by: str | None) -> bool:
        """Quarantine (or with None, release) one local media; False if unknown or protected."""

        def update(cursor: Cursor) -> bool:
            if quarantined_by is None:
                cursor.execute(
                    "UPDATE local_media SET quarantined_by = NULL WHERE media_id = ?", (media_id,)
                )
            else:
                cursor.execute(
                    "UPDATE local_media SET quarantined_by = ?"
                    " WHERE media_id = ? AND safe_from_quarantine = ?",
                    (quarantined_by, media_id, False),
                )
            return cursor.rowcount == 1

        return await self.db.run_interaction("set_local_quarantine", update)

    async def quarantine_local_media_of_user(self, user_id: str, quarantined_by: str) -> int:
        def update(cursor: Cursor) -> int:
            cursor.execute(
                "UPDATE local_media SET quarantined_by = ?"
                " WHERE user_id = ? AND safe_from_quarantine = ? AND quarantined_by IS NULL",
                (quarantined_by, user_id, False),
            )
            return cursor.rowcount

        return await self.db.run_interaction("quarantine_local_media_of_user", update)

    async def set_protected(self, media_id: str, protected: bool) -> bool:
        def update(cursor: Cursor) -> bool:
            cursor.execute(
                "UPDATE local_media SET safe_from_quarantine = ? WHERE media_id = ?",
                (protected, media_id),
            )
            return cursor.rowcount == 1

        return await self.db.run_interaction("set_media_protected", update)

    async def get_local_media_of_user(self, user_id: str) -> list[str]:
        rows = await self.db.execute(
            "get_local_media_of_user",
            "SELECT media_id FROM local_media WHERE user_id = ? ORDER BY created_ts",
            user_id,
        )
        return [str(row[0]) for row in rows]

    # --- remote media (filled by the federation media fetcher) ---------------------------

    async def get_remote_media(self, origin: str, media_id: str) -> RemoteMedia | None:
        rows = await self.db.execute(
            "get_remote_media",
            f"SELECT {_REMOTE_COLUMNS} FROM remote_media_cache"
            " WHERE media_origin = ? AND media_id = ?",
            origin,
            media_id,
        )
        return _remote(rows[0]) if rows else None

    async def store_remote_media(self, media: RemoteMedia) -> None:
        await self.db.execute(
            "store_remote_media",
            f"INSERT INTO remote_media_cache ({_REMOTE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            media.media_origin,
            media.media_id,
            media.media_type,
            media.media_length,
            media.upload_name,
            media.created_ts,
            media.last_access_ts,
            media.filesystem_id,
            media.quarantined_by,
            media.authenticated,
            media.sha256,
        )

    async def get_remote_thumbnails(self, origin: str, media_id: str) -> list[ThumbnailInfo]:
        rows = await self.db.execute(
            "get_remote_thumbnails",
            "SELECT width, height, method, type, length FROM remote_media_thumbnails"
            " WHERE media_origin = ? AND media_id = ?",
            origin,
            media_id,
        )
        return [ThumbnailInfo(int(w), int(h), str(m), str(t), int(n)) for w, h, m, t, n in rows]

    async def store_remote_thumbnail(self, origin: str, media_id: str, info: ThumbnailInfo) -> None:
        await self.db.execute(
            "store_remote_thumbnail",
            "INSERT INTO remote_media_thumbnails"
            " (media_origin, media_id, width, height, method, type, length)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            origin,
            media_id,
            info.width,
            info.height,
            info.method,
            info.type,
            info.length,
        )

    async def get_remote_media_before(self, before_ts: int) -> list[tuple[str, str, str]]:
        """(origin, media_id, filesystem_id) of cached remote media unused since before_ts."""
        rows = await self.db.execute(
            "get_remote_media_before",
            "SELECT media_origin, media_id, filesystem_id FROM remote_media_cache"
            " WHERE COALESCE(last_access_ts, created_ts) < ? AND quarantined_by IS NULL",
            before_ts,
        )
        return [(str(o), str(m), str(f)) for o, m, f in rows]

    async def delete_remote_media_rows(self, keys: Collection[tuple[str, str]]) -> None:
        ordered = sorted(keys)

        def delete(cursor: Cursor) -> None:
            cursor.executemany(
                "DELETE FROM remote_media_thumbnails WHERE media_origin = ? AND media_id = ?",
                ordered,
            )
            cursor.executemany(
                "DELETE FROM remote_media_cache WHERE media_origin = ? AND media_id = ?",
                ordered,
            )

        await self.db.run_interaction("delete_remote_media", delete)

    async def set_remote_quarantine(
        self, origin: str, media_id: str, quarantined_by: str | None
    ) -> bool:
        def update(cursor: Cursor) -> bool:
            cursor.execute(
                "UPDATE remote_media_cache SET quarantined_by = ?"
                " WHERE media_origin = ? AND media_id = ?",
                (quarantined_by, origin, media_id),
            )
            return cursor.rowcount == 1

        return await self.db.run_interaction("set_remote_quarantine", update)
