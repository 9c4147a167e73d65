"""The fleet's state: payloads, model lines, devices, assignments, reports.

Everything the server (``server.py``) and the static export (``export.py``)
answer comes from here, so both give a device the same answer (docs/FLEET.md).
Storage is SQL over the DB-API: the standard library's sqlite3 by default, or a
PostgreSQL server through psycopg when ``--db postgresql://...`` is given.
Payload files live on disk, content-addressed by their SHA-256, written to a
temporary name and renamed, so a crash never leaves half a payload under a
real name.

All methods are synchronous and must be called from one thread at a time
(the server runs them on a single worker thread, which also serialises
concurrent uploads: version checks and inserts happen in one transaction).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..format.payload import DIGEST_CRC32, Payload, parse
from ..status import ModelOTAError
from .errors import FleetError, check_id, parse_u32
from .rollout_store import ROLLOUT_SCHEMA, RolloutMixin

SHA_RE = re.compile(r"[0-9a-f]{64}")
MANIFEST_MAX = 512  # bytes; the device's manifest buffer (docs/FLEET.md)
REPORT_EVENTS = ("check", "download", "apply")

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS payloads (
    sha256 TEXT PRIMARY KEY,
    line TEXT NOT NULL,
    version BIGINT NOT NULL,
    base_version BIGINT NOT NULL,
    size BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    digest TEXT NOT NULL,
    uploaded_at DOUBLE PRECISION NOT NULL,
    UNIQUE (line, version, base_version)
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    grp TEXT,
    fingerprint TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    last_check DOUBLE PRECISION,
    last_version BIGINT
);
CREATE TABLE IF NOT EXISTS assignments (
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    line TEXT NOT NULL,
    version BIGINT,
    PRIMARY KEY (kind, target)
);
CREATE TABLE IF NOT EXISTS reports (
    device TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    event TEXT NOT NULL,
    version BIGINT,
    status INTEGER,
    status_name TEXT,
    message TEXT,
    bytes BIGINT
);
CREATE INDEX IF NOT EXISTS reports_device ON reports (device, at);
"""


def parse_fingerprint(value: str) -> str:
    v = value.lower()
    if not re.fullmatch(r"[0-9a-f]{32}", v):
        raise FleetError(400, "BadRequest", "fingerprint must be 32 hex digits")
    return v


@dataclass(frozen=True)
class PayloadRecord:
    sha256: str
    line: str
    version: int
    base_version: int
    size: int
    fingerprint: str
    digest: str
    uploaded_at: float

    @property
    def url(self) -> str:
        return f"/v1/payloads/{self.sha256}.mota"

    def manifest(self) -> bytes:
        """The device's manifest: flat JSON, keys in the documented order."""
        doc = {
            "version": self.version,
            "base_version": self.base_version,
            "size": self.size,
            "fingerprint": self.fingerprint,
            "sha256": self.sha256,
            "url": self.url,
            "line": self.line,
        }
        raw = json.dumps(doc, separators=(",", ":")).encode()
        assert len(raw) <= MANIFEST_MAX, "ids are bounded, so the manifest is"
        return raw


@dataclass(frozen=True)
class Answer:
    """What a device asking for its model gets."""

    http: int  # 200 manifest, 204 current
    payload: PayloadRecord | None


class _Db:
    """A DB-API connection with '?' placeholders whatever the driver."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg  # type: ignore[import-not-found]
            except ImportError as e:
                raise FleetError(
                    500,
                    "NoDriver",
                    "a PostgreSQL URL needs the psycopg package (pip install psycopg)",
                ) from e
            # autocommit: transactions are the explicit BEGIN/COMMIT below, as with sqlite
            try:
                self.conn: Any = psycopg.connect(url, autocommit=True, connect_timeout=10)
            except psycopg.Error as e:
                raise FleetError(500, "Database", f"cannot connect to {url}: {e}") from e
            self.param = "%s"
            self.integrity: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.param = "?"
            self.integrity = (sqlite3.IntegrityError,)
        self.sqlite = self.param == "?"

    def q(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", self.param)

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self.q(sql), args)

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.execute(sql, args).fetchall())

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        row = self.execute(sql, args).fetchone()
        return None if row is None else tuple(row)

    def begin(self) -> None:
        # sqlite: take the write lock now, so a check-then-insert cannot race
        # another process; PostgreSQL: the single writer thread serialises
        self.conn.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


class Fleet(RolloutMixin):
    """Payload files under ``data/payloads`` plus the SQL tables above (and
    the rollout tables of rollout_store.py).

    ``clock`` gives every recorded time (reports, rollout waves): the tests
    and the demo pass a simulated one to let soak periods pass at once."""

    def __init__(
        self, data_dir: Path, db_url: str | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.clock: Callable[[], float] = clock or time.time
        self.data_dir = Path(data_dir)
        self.payload_dir = self.data_dir / "payloads"
        self.payload_dir.mkdir(parents=True, exist_ok=True)
        self.db = _Db(db_url or str(self.data_dir / "fleet.db"))
        for stmt in (SCHEMA + ROLLOUT_SCHEMA).split(";"):
            if stmt.strip():
                self.db.execute(stmt)
        self.generation = 0  # bumped on every change an answer depends on

    def changed(self) -> None:
        """Something a device's answer depends on changed."""
        self.generation += 1

    def close(self) -> None:
        self.db.close()

    # -- payloads ---------------------------------------------------------

    def payload_path(self, sha: str) -> Path:
        if not SHA_RE.fullmatch(sha):
            raise FleetError(400, "BadId", "payload id must be 64 lowercase hex digits")
        return self.payload_dir / f"{sha}.mota"

    def _record(self, row: tuple[Any, ...]) -> PayloadRecord:
        return PayloadRecord(*(row[0], row[1], int(row[2]), int(row[3]), int(row[4])),
                             row[5], row[6], float(row[7]))  # fmt: skip

    _COLS = "sha256, line, version, base_version, size, fingerprint, digest, uploaded_at"

    def payloads(self, line: str | None = None) -> list[PayloadRecord]:
        if line is None:
            rows = self.db.all(
                f"SELECT {self._COLS} FROM payloads ORDER BY line, version, base_version"
            )
        else:
            rows = self.db.all(
                f"SELECT {self._COLS} FROM payloads WHERE line = ? ORDER BY version, base_version",
                (line,),
            )
        return [self._record(r) for r in rows]

    def payload(self, sha: str) -> PayloadRecord | None:
        row = self.db.one(f"SELECT {self._COLS} FROM payloads WHERE sha256 = ?", (sha,))
        return None if row is None else self._record(row)

    def upload(self, line: str, data: bytes) -> tuple[PayloadRecord, bool]:
        """Validates and stores a payload for a model line. Returns the record
        and whether it is new (re-uploading the same bytes is idempotent)."""
        check_id("line", line)
        try:
            payload = parse(data)
        except ModelOTAError as e:
            raise FleetError(400, e.status.name, f"not a valid payload: {e}") from e
        h = payload.header
        sha = hashlib.sha256(data).hexdigest()
        fp = h.fingerprint.hex()
        base = h.base_version if h.is_delta else 0
        existing = self.payload(sha)
        if existing is not None:
            if existing.line != line:
                raise FleetError(
                    409, "Conflict", f"these bytes are already in line {existing.line!r}"
                )
            return existing, False
        path = self.payload_path(sha)
        self._write_file(path, data)
        self.db.begin()
        try:
            self._check_upload(line, payload, fp, base)
            now = self.clock()
            self.db.execute(
                "INSERT INTO lines (name, fingerprint, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (line, fp, now),
            )
            row = self.db.one("SELECT fingerprint FROM lines WHERE name = ?", (line,))
            if row is None or row[0] != fp:  # another process created the line meanwhile
                raise FleetError(409, "WrongModel", f"line {line!r} is for another model")
            rec = PayloadRecord(sha, line, h.model_version, base, len(data), fp,
                                h.digest.hex(), now)  # fmt: skip
            try:
                self.db.execute(
                    f"INSERT INTO payloads ({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    tuple(asdict(rec).values()),
                )
            except self.db.integrity as e:  # another server process won the race
                raise FleetError(409, "AlreadyCurrent", f"line {line!r} got this version") from e
            self.db.commit()
        except BaseException:
            self.db.rollback()
            if self.payload(sha) is None:
                path.unlink(missing_ok=True)
            raise
        self.changed()
        return rec, True

    def _check_upload(self, line: str, payload: Payload, fp: str, base: int) -> None:
        h = payload.header
        row = self.db.one("SELECT fingerprint FROM lines WHERE name = ?", (line,))
        if row is not None and row[0] != fp:
            raise FleetError(
                409, "WrongModel", f"line {line!r} is for model {row[0]}, this payload for {fp}"
            )
        full = self.db.all(
            "SELECT version, digest FROM payloads WHERE line = ? AND base_version = 0", (line,)
        )
        versions = {int(v): d for v, d in full}
        latest = max(versions, default=0)
        if not h.is_delta:
            if h.model_version < latest:
                raise FleetError(
                    409,
                    "Rollback",
                    f"version {h.model_version} is below the line's latest {latest}:"
                    " versions only go up",
                )
            if h.model_version in versions:
                raise FleetError(
                    409, "AlreadyCurrent", f"line {line!r} already has version {h.model_version}"
                )
            return
        # a delta ships an existing version to devices that run `base`
        if h.model_version not in versions:
            raise FleetError(
                409,
                "WrongBase",
                f"a delta to version {h.model_version} needs that version's full payload first",
            )
        if versions[h.model_version] != h.digest.hex():
            raise FleetError(
                409,
                "DigestMismatch",
                f"this delta does not end in version {h.model_version}'s weights",
            )
        if base not in versions:
            raise FleetError(409, "WrongBase", f"base version {base} is not in line {line!r}")
        if h.digest_type == DIGEST_CRC32:
            base_crc = bytes.fromhex(versions[base])[:4]
            if int.from_bytes(base_crc, "little") != h.base_crc32:
                raise FleetError(
                    409, "WrongBase", f"this delta was built on other weights than v{base}"
                )
        if self.db.one(
            "SELECT sha256 FROM payloads WHERE line = ? AND version = ? AND base_version = ?",
            (line, h.model_version, base),
        ):
            raise FleetError(409, "AlreadyCurrent", f"a delta {base} -> {h.model_version} exists")

    def _write_file(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.payload_dir, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- devices and assignments -----------------------------------------

    def register(self, device: str, group: str | None, fingerprint: str | None) -> dict[str, Any]:
        check_id("device", device)
        if group is not None:
            check_id("group", group)
        if fingerprint is not None:
            fingerprint = parse_fingerprint(fingerprint)
        self.db.begin()
        try:
            if self.db.one("SELECT id FROM devices WHERE id = ?", (device,)) is None:
                self.db.execute(
                    "INSERT INTO devices (id, grp, fingerprint, created_at) VALUES (?, ?, ?, ?)",
                    (device, group, fingerprint, self.clock()),
                )
            else:
                self.db.execute(
                    "UPDATE devices SET grp = ?, fingerprint = ? WHERE id = ?",
                    (group, fingerprint, device),
                )
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise
        self.changed()
        return {"id": device, "group": group, "fingerprint": fingerprint}

    def assign(self, kind: str, target: str, line: str, version: int | None) -> dict[str, Any]:
        if kind not in ("device", "group"):
            raise FleetError(400, "BadRequest", "assignments are per 'device' or per 'group'")
        check_id(kind, target)
        check_id("line", line)
        if version is not None:
            version = parse_u32("version", version)
        self.db.begin()
        try:
            if self.db.one("SELECT name FROM lines WHERE name = ?", (line,)) is None:
                raise FleetError(404, "UnknownLine", f"no payload was uploaded for line {line!r}")
            if version is not None and not self.db.one(
                "SELECT sha256 FROM payloads WHERE line = ? AND version = ? AND base_version = 0",
                (line, version),
            ):
                raise FleetError(404, "UnknownVersion", f"line {line!r} has no version {version}")
            if kind == "device" and not self.db.one(
                "SELECT id FROM devices WHERE id = ?", (target,)
            ):
                raise FleetError(404, "UnknownDevice", f"device {target!r} is not registered")
            active = self.active_rollout(target) if kind == "group" else None
            if active is not None:
                raise FleetError(
                    409, "RolloutActive",
                    f"rollout {active.id} ({active.state}) manages group {target!r}: abort it"
                    " first",
                )  # fmt: skip
            self.db.execute("DELETE FROM assignments WHERE kind = ? AND target = ?", (kind, target))
            self.db.execute(
                "INSERT INTO assignments (kind, target, line, version) VALUES (?, ?, ?, ?)",
                (kind, target, line, version),
            )
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise
        self.changed()
        return {"kind": kind, "target": target, "line": line, "version": version}

    def devices(self) -> list[dict[str, Any]]:
        out = []
        for dev, grp, fp, created, last_check, last_version in self.db.all(
            "SELECT id, grp, fingerprint, created_at, last_check, last_version FROM devices"
            " ORDER BY id"
        ):
            target = self.target(dev)
            last = self.reports(dev, 1)
            out.append({
                "id": dev, "group": grp, "fingerprint": fp, "created_at": created,
                "last_check": last_check, "last_version": last_version,
                "assigned": None if target is None else {"line": target.line,
                                                         "version": target.version},
                "last_report": last[0] if last else None,
            })  # fmt: skip
        return out

    def target(self, device: str) -> PayloadRecord | None:
        """The full payload assigned to a device (its own assignment, else its
        group's); None when the device is unknown or nothing is assigned."""
        row = self.db.one("SELECT grp FROM devices WHERE id = ?", (device,))
        if row is None:
            return None
        assignment = self.db.one(
            "SELECT line, version FROM assignments WHERE kind = 'device' AND target = ?", (device,)
        )
        if assignment is None and row[0] is not None:
            governed, line, version = self.rollout_version(device, row[0])
            if governed:  # a rollout manages the group: its wave decides
                return None if version is None else self._full(line, version)
            assignment = self.db.one(
                "SELECT line, version FROM assignments WHERE kind = 'group' AND target = ?",
                (row[0],),
            )
        if assignment is None:
            return None
        line, version = assignment
        if version is None:
            found = self.db.one(
                f"SELECT {self._COLS} FROM payloads WHERE line = ? AND base_version = 0"
                " ORDER BY version DESC LIMIT 1",
                (line,),
            )
            return None if found is None else self._record(found)
        return self._full(line, int(version))

    def _full(self, line: str, version: int) -> PayloadRecord | None:
        found = self.db.one(
            f"SELECT {self._COLS} FROM payloads WHERE line = ? AND version = ?"
            " AND base_version = 0",
            (line, version),
        )
        return None if found is None else self._record(found)

    def answer(self, device: str, fingerprint: str | None, version: int | None) -> Answer:
        """What GET /v1/devices/{id}/manifest.json answers (docs/FLEET.md)."""
        check_id("device", device)
        reg = self.db.one("SELECT fingerprint FROM devices WHERE id = ?", (device,))
        if reg is None:
            raise FleetError(404, "UnknownDevice", f"device {device!r} is not registered")
        full = self.target(device)
        if full is None:
            raise FleetError(404, "NoAssignment", f"no model is assigned to device {device!r}")
        for have, who in (
            (fingerprint, "the device reports"),
            (reg[0], "the device is registered with"),
        ):
            if have is not None and have != full.fingerprint:
                raise FleetError(
                    409,
                    "WrongModel",
                    f"{who} model {have}; line {full.line!r} is for {full.fingerprint}",
                )
        if version is not None and version >= full.version:
            return Answer(204, None)
        if version is not None:
            delta = self.db.one(
                f"SELECT {self._COLS} FROM payloads WHERE line = ? AND version = ?"
                " AND base_version = ?",
                (full.line, full.version, version),
            )
            if delta is not None and int(delta[4]) < full.size:
                return Answer(200, self._record(delta))
        return Answer(200, full)

    # -- device activity --------------------------------------------------

    def record_checks(self, seen: dict[str, tuple[float, int | None]]) -> None:
        """Stores the last check time and version of each device (batched)."""
        if not seen:
            return
        self.db.begin()
        try:
            for dev, (at, version) in seen.items():
                self.db.execute("UPDATE devices SET last_check = ? WHERE id = ?", (at, dev))
                if not self._reported_since(dev, at):  # a batched check is older news
                    self._version_seen(dev, version, at)
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def report(self, device: str, body: dict[str, Any]) -> None:
        check_id("device", device)
        if not isinstance(body, dict):
            raise FleetError(400, "BadRequest", "a report is a JSON object")
        event = body.get("event")
        if event not in REPORT_EVENTS:
            raise FleetError(400, "BadRequest", f"event must be one of {', '.join(REPORT_EVENTS)}")
        version = None if body.get("version") is None else parse_u32("version", body["version"])
        status = body.get("status")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)
                                   or not -1000 <= status <= 1000):  # fmt: skip
            raise FleetError(400, "BadRequest", "status must be a small integer")
        nbytes = None if body.get("bytes") is None else parse_u32("bytes", body["bytes"])
        texts = []
        for key in ("status_name", "message"):
            v = body.get(key)
            if v is not None and not isinstance(v, str):
                raise FleetError(400, "BadRequest", f"{key} must be a string")
            texts.append(None if v is None else v[:500])
        if self.db.one("SELECT id FROM devices WHERE id = ?", (device,)) is None:
            raise FleetError(404, "UnknownDevice", f"device {device!r} is not registered")
        now = self.clock()
        self.db.begin()
        try:
            self.db.execute(
                "INSERT INTO reports (device, at, event, version, status, status_name, message,"
                " bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (device, now, event, version, status, texts[0], texts[1], nbytes),
            )
            self._version_seen(device, version, now)  # the version it runs after the event
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def reports(self, device: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        cols = "device, at, event, version, status, status_name, message, bytes"
        if device is None:
            rows = self.db.all(f"SELECT {cols} FROM reports ORDER BY at DESC LIMIT ?", (limit,))
        else:
            check_id("device", device)
            rows = self.db.all(
                f"SELECT {cols} FROM reports WHERE device = ? ORDER BY at DESC LIMIT ?",
                (device, limit),
            )
        keys = cols.split(", ")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def device_ids(self) -> list[str]:
        return [r[0] for r in self.db.all("SELECT id FROM devices ORDER BY id")]

    # -- field data (issue [7]) ------------------------------------------

    def store_windows(self, device: str, data: bytes, hmac_key: bytes | None = None) -> list[str]:
        """Sample windows POSTed by a device: each frame is checked (CRC) and
        written as an Edge Impulse data acquisition file (+ CSV) under
        ``data/windows/<device>/``. Returns the file names relative to it."""
        from .. import collect

        check_id("device", device)
        if self.db.one("SELECT id FROM devices WHERE id = ?", (device,)) is None:
            raise FleetError(404, "UnknownDevice", f"device {device!r} is not registered")
        try:
            windows = collect.iter_windows(data)
        except ValueError as e:
            raise FleetError(400, "BadWindow", str(e)) from e
        if not windows:
            raise FleetError(400, "BadWindow", "the body holds no sample window")
        out = self.data_dir / "windows" / device
        out.mkdir(parents=True, exist_ok=True)
        files: list[str] = []
        for w in windows:  # a value JSON cannot hold (NaN, inf) is refused before writing
            try:
                collect.ingestion_document(w, device, "modelota", None)
            except ValueError as e:
                raise FleetError(400, "BadWindow", str(e)) from e
        for w in windows:
            for path in collect.write_window(out, w, device, "modelota", hmac_key):
                files.append(path.name)
        return files
