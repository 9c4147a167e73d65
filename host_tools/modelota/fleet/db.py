"""The fleet's state: payloads, model lines, devices, assignments, reports,
sample windows.

Everything the server (``server.py``) and the static export (``export.py``)
answer comes from here, so both give a device the same answer (docs/FLEET.md).
Storage is SQL over the DB-API: the standard library's sqlite3 by default, or a
PostgreSQL server through psycopg when ``--db postgresql://...`` is given.

Payload bytes live where every server process can read them: with SQLite in
files under ``data/payloads`` (content-addressed by their SHA-256, written to
a temporary name and renamed, so a crash never leaves half a payload under a
real name); with PostgreSQL in the ``payload_chunks`` table, inserted in the
same transaction as the payload's row, so any replica serves any payload and
a refused upload leaves nothing.

Threads: every thread gets its own connection (``Fleet.db``). The server
answers checks on reader threads and writes on one writer thread; a
transaction never spans two threads. Every change an answer depends on calls
:meth:`Fleet.changed` inside its transaction: the local generation goes up
and, on PostgreSQL, ``NOTIFY modelota_fleet`` tells the other replicas
(:meth:`Fleet.listen`) to drop their caches.

The schema is created and upgraded by :data:`MIGRATIONS`, each applied once
in its own transaction and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..format.payload import DIGEST_CRC32, Payload, parse
from ..status import ModelOTAError
from .errors import FleetError, check_id, check_text, parse_u32
from .rollout_store import ROLLOUT_SCHEMA, RolloutMixin

SHA_RE = re.compile(r"[0-9a-f]{64}")
MANIFEST_MAX = 512  # bytes; the device's manifest buffer (docs/FLEET.md)
REPORT_EVENTS = ("check", "download", "apply")
MESSAGE_MAX = 500  # characters of a report's message kept
NAME_MAX = 64  # characters of a report's status_name kept
CHUNK = 256 * 1024  # bytes per payload_chunks row
NOTIFY_CHANNEL = "modelota_fleet"
DAY = 86400


@dataclass(frozen=True)
class Quotas:
    """Per device and UTC day (docs/FLEET.md, "Limits"). Requests beyond
    them are refused whole with 429 and Retry-After (the next UTC day)."""

    window_bytes: int = 16 * 1024 * 1024  # frame bytes stored
    windows: int = 5000  # frames stored
    reports: int = 2000  # reports recorded
    windows_per_request: int = 256  # frames in one POST (413 beyond)


DEFAULT_QUOTAS = Quotas()


# -- schema ------------------------------------------------------------------
# One entry per schema version, applied in order, each in one transaction.
# {blob} and {serial} are the dialect's binary type and auto-increment key.

SCHEMA_V1 = """
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

# device keys, replicas (payload bytes in the database), windows in the
# database with per-day quotas, nonces of signed mutations (issue [5])
SCHEMA_V2 = """
ALTER TABLE devices ADD COLUMN key_gen BIGINT NOT NULL DEFAULT 1;
ALTER TABLE payloads ADD COLUMN storage TEXT NOT NULL DEFAULT 'disk';
CREATE TABLE payload_chunks (
    sha256 TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data {blob} NOT NULL,
    PRIMARY KEY (sha256, seq)
);
CREATE TABLE windows (
    id {serial},
    device TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    seq BIGINT NOT NULL,
    first_sample BIGINT NOT NULL,
    frame {blob} NOT NULL
);
CREATE INDEX windows_device ON windows (device, id);
CREATE TABLE usage (
    device TEXT NOT NULL,
    day BIGINT NOT NULL,
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (device, day, kind)
);
CREATE TABLE nonces (
    device TEXT NOT NULL,
    nonce TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (device, nonce)
);
CREATE INDEX nonces_at ON nonces (at);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "lines, payloads, devices, assignments, reports", SCHEMA_V1),
    (2, "device keys, payload chunks, windows, quotas, nonces", SCHEMA_V2),
    # rollouts, quality summaries, version history (rollout_store.py)
    (3, "rollouts, quality, version changes", ROLLOUT_SCHEMA),
]


def parse_fingerprint(value: str) -> str:
    v = value.lower() if isinstance(value, str) else ""
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


def _is_pg(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class _Db:
    """A DB-API connection with '?' placeholders whatever the driver."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statements = 0  # executed so far (tests measure work with it)
        if _is_pg(url):
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
                raise FleetError(503, "Database", f"cannot connect to the database: {e}") from e
            self.param = "%s"
            self.integrity: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.param = "?"
            self.integrity = (sqlite3.IntegrityError,)
        self.sqlite = self.param == "?"
        self.blob = "BLOB" if self.sqlite else "BYTEA"
        self.serial = (
            "INTEGER PRIMARY KEY AUTOINCREMENT"
            if self.sqlite
            else "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        )

    def q(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", self.param)

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        self.statements += 1
        return self.conn.execute(self.q(sql), args)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.statements += 1
        if self.sqlite:
            self.conn.executemany(sql, rows)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(self.q(sql), rows)

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.execute(sql, args).fetchall())

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        row = self.execute(sql, args).fetchone()
        return None if row is None else tuple(row)

    def begin(self) -> None:
        # sqlite: take the write lock now, so a check-then-insert cannot race
        # another connection; PostgreSQL: see lock()
        self.conn.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")

    def lock(self, name: str) -> None:
        """PostgreSQL: serialise transactions about ``name`` across replicas
        until this one ends (sqlite: BEGIN IMMEDIATE already serialises)."""
        if not self.sqlite:
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            self.execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except Exception:  # the connection may be gone: then so is the transaction
            pass

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


def _transient(e: BaseException) -> bool:
    """A database error that is the connection's, not the request's."""
    try:
        import psycopg  # type: ignore[import-not-found]
    except ImportError:
        return False
    return isinstance(e, psycopg.OperationalError | psycopg.InterfaceError)


class Fleet(RolloutMixin):
    """The SQL tables above (and the rollout tables of rollout_store.py) plus
    the payload bytes (files or chunks).

    ``clock`` gives every recorded time (reports, rollout waves): the tests
    and the demo pass a simulated one to let soak periods pass at once.
    ``payload_store``: "disk" or "db" (default: disk with SQLite, db with
    PostgreSQL)."""

    def __init__(
        self, data_dir: Path, db_url: str | None = None,
        clock: Callable[[], float] | None = None, payload_store: str | None = None,
    ) -> None:  # fmt: skip
        self.clock: Callable[[], float] = clock or time.time
        self.data_dir = Path(data_dir)
        self.payload_dir = self.data_dir / "payloads"
        self.url = db_url or str(self.data_dir / "fleet.db")
        if not _is_pg(self.url):
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = payload_store or ("db" if _is_pg(self.url) else "disk")
        if self.store not in ("disk", "db"):
            raise FleetError(500, "BadConfig", "payload storage is 'disk' or 'db'")
        if self.store == "disk":
            self.payload_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: list[_Db] = []
        self._conns_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._generation = 0  # bumped on every change an answer depends on
        self.coherent = True  # False while a replica may have missed a NOTIFY
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self.migrate()

    # -- connections, migrations, change notification ---------------------

    @property
    def db(self) -> _Db:
        """This thread's connection (opened on first use)."""
        conn: _Db | None = getattr(self._local, "db", None)
        if conn is None:
            conn = _Db(self.url)
            self._local.db = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def drop_connection(self) -> None:
        """Forgets this thread's connection (after it failed): the next use reconnects."""
        conn: _Db | None = getattr(self._local, "db", None)
        if conn is not None:
            self._local.db = None
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            conn.close()

    def guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs ``fn``; a lost database connection becomes 503 (and is
        reopened next time) instead of an internal error."""
        try:
            return fn(*args)
        except FleetError:
            raise
        except Exception as e:
            if _transient(e):
                self.drop_connection()
                raise FleetError(503, "Database", "the database is unreachable", 5) from e
            raise

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(5)
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()
        self._local = threading.local()

    def migrate(self) -> None:
        """Applies the MIGRATIONS this database lacks, each in its own
        transaction, serialised across processes starting together."""
        db = self.db
        for version, name, sql in MIGRATIONS:
            db.begin()
            try:
                db.lock("modelota schema")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
                )
                if db.one("SELECT version FROM schema_migrations WHERE version = ?", (version,)):
                    db.commit()
                    continue
                for stmt in sql.format(blob=db.blob, serial=db.serial).split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
                db.commit()
            except BaseException:
                db.rollback()
                raise

    @property
    def generation(self) -> int:
        return self._generation

    def bump(self) -> None:
        with self._gen_lock:
            self._generation += 1

    def changed(self) -> None:
        """Call for any change an answer depends on, inside its transaction
        or after it: the local generation goes up once the change is
        committed (a reader that started before must not cache what it read
        under the new generation), and on PostgreSQL a NOTIFY tells every
        replica (delivered at the commit)."""
        if getattr(self._local, "in_tx", False):
            self._local.pending = True
        else:
            self.bump()
        if not self.db.sqlite:
            self.db.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, str(os.getpid())))

    def listen(self, on_change: Callable[[], None] | None = None) -> None:
        """PostgreSQL: a thread that LISTENs and bumps the generation on each
        notification (and while it has no connection, marks the fleet
        incoherent so that callers skip their caches)."""
        if self.db.sqlite or self._listener is not None:
            return

        def run() -> None:
            import psycopg

            while not self._stop.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                        self.bump()  # anything may have changed while we were away
                        self.coherent = True
                        while not self._stop.is_set():
                            for _ in conn.notifies(timeout=0.5, stop_after=1000):
                                self.bump()
                                if on_change is not None:
                                    on_change()
                except Exception:
                    self.coherent = False
                    self.bump()
                    self._stop.wait(0.5)

        self.coherent = False
        self._listener = threading.Thread(target=run, name="modelota-listen", daemon=True)
        self._listener.start()

    def _write(self, fn: Callable[[], Any]) -> Any:
        """``fn`` in one transaction (rolled back on any exception); the
        generation moves after the commit when ``fn`` called changed()."""
        db = self.db
        db.begin()
        self._local.in_tx, self._local.pending = True, False
        try:
            out = fn()
            db.commit()
        except BaseException:
            db.rollback()
            raise
        finally:
            self._local.in_tx = False
        if self._local.pending:
            self._local.pending = False
            self.bump()
        return out

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
        and whether it is new (re-uploading the same bytes is idempotent).
        Racing uploads (threads or replicas) leave one winner: the others get
        409, or the winner's record for the same bytes."""
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
            return self._same_bytes(existing, line)
        path = self.payload_path(sha)
        if self.store == "disk":
            self._write_file(path, data)
        now = self.clock()
        rec = PayloadRecord(sha, line, h.model_version, base, len(data), fp, h.digest.hex(), now)

        def insert() -> PayloadRecord | None:
            self.db.lock(f"line {line}")  # versions only go up, also across replicas
            same = self.payload(sha)  # the same bytes, uploaded meanwhile (another replica)
            if same is not None:
                return same
            self._check_upload(line, payload, fp, base)
            self.db.execute(
                "INSERT INTO lines (name, fingerprint, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (line, fp, now),
            )
            row = self.db.one("SELECT fingerprint FROM lines WHERE name = ?", (line,))
            if row is None or row[0] != fp:  # another process created the line meanwhile
                raise FleetError(409, "WrongModel", f"line {line!r} is for another model")
            self.db.execute(
                f"INSERT INTO payloads ({self._COLS}, storage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*asdict(rec).values(), self.store),
            )
            if self.store == "db":
                pieces = range(0, len(data), CHUNK)
                self.db.executemany(
                    "INSERT INTO payload_chunks (sha256, seq, data) VALUES (?, ?, ?)",
                    [(sha, i, data[o : o + CHUNK]) for i, o in enumerate(pieces)],
                )
            self.changed()
            return None

        try:
            same = self._write(insert)
        except self.db.integrity as e:  # another thread or server process won the race
            existing = self.payload(sha)
            if existing is not None:
                return self._same_bytes(existing, line)
            self._drop_file(sha)
            raise FleetError(409, "AlreadyCurrent", f"line {line!r} got this version") from e
        except BaseException:
            self._drop_file(sha)
            raise
        if same is not None:
            return self._same_bytes(same, line)
        return rec, True

    def _same_bytes(self, existing: PayloadRecord, line: str) -> tuple[PayloadRecord, bool]:
        if existing.line != line:
            raise FleetError(409, "Conflict", f"these bytes are already in line {existing.line!r}")
        return existing, False

    def _drop_file(self, sha: str) -> None:
        if self.store == "disk" and self.payload(sha) is None:
            self.payload_path(sha).unlink(missing_ok=True)

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

    def _storage_of(self, sha: str) -> str:
        row = self.db.one("SELECT storage FROM payloads WHERE sha256 = ?", (sha,))
        if row is None:
            raise FleetError(404, "UnknownPayload", "no such payload")
        return str(row[0])

    def read_chunk(self, sha: str, seq: int) -> bytes:
        """Bytes [seq * CHUNK, (seq + 1) * CHUNK) of a payload, wherever they
        are stored (payloads are immutable: callers may cache the result)."""
        if self._storage_of(sha) == "disk":
            try:
                with open(self.payload_path(sha), "rb") as f:
                    f.seek(seq * CHUNK)
                    return f.read(CHUNK)
            except FileNotFoundError:
                raise FleetError(
                    503, "Storage", "payload bytes are on another server's disk", 5
                ) from None
        row = self.db.one(
            "SELECT data FROM payload_chunks WHERE sha256 = ? AND seq = ?", (sha, seq)
        )
        if row is None:
            raise FleetError(500, "Storage", "payload chunk missing")
        return bytes(row[0])

    def copy_payload(self, sha: str, out: BinaryIO) -> None:
        rec = self.payload(sha)
        if rec is None:
            raise FleetError(404, "UnknownPayload", "no such payload")
        for seq in range((rec.size + CHUNK - 1) // CHUNK):
            out.write(self.read_chunk(sha, seq))

    # -- devices and assignments -----------------------------------------

    def register(
        self, device: str, group: str | None, fingerprint: str | None, rotate: bool = False
    ) -> dict[str, Any]:
        """Creates or updates a device; ``rotate`` revokes its key (a new key
        generation). The answer's ``key_gen`` is the generation its key
        derives from and ``created`` whether the device is new."""
        check_id("device", device)
        if group is not None:
            check_id("group", group)
        if fingerprint is not None:
            fingerprint = parse_fingerprint(fingerprint)

        def upsert() -> tuple[bool, int]:
            cur = self.db.execute(
                "INSERT INTO devices (id, grp, fingerprint, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (device, group, fingerprint, self.clock()),
            )
            created = cur.rowcount == 1
            if not created:
                self.db.execute(
                    "UPDATE devices SET grp = ?, fingerprint = ?,"
                    " key_gen = key_gen + ? WHERE id = ?",
                    (group, fingerprint, 1 if rotate else 0, device),
                )
            row = self.db.one("SELECT key_gen FROM devices WHERE id = ?", (device,))
            assert row is not None
            self.changed()
            return created, int(row[0])

        created, gen = self._write(upsert)
        return {"id": device, "group": group, "fingerprint": fingerprint, "key_gen": gen,
                "created": created}  # fmt: skip

    def key_gen(self, device: str) -> int | None:
        """The key generation of a registered device, None when unknown."""
        row = self.db.one("SELECT key_gen FROM devices WHERE id = ?", (device,))
        return None if row is None else int(row[0])

    def meta(self, key: str, default: str) -> str:
        """A setting shared by every replica: the stored value, or ``default``
        stored now (the first process to ask decides)."""

        def get() -> str:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, default),
            )
            row = self.db.one("SELECT value FROM meta WHERE key = ?", (key,))
            assert row is not None
            return str(row[0])

        return str(self._write(get))

    def assign(self, kind: str, target: str, line: str, version: int | None) -> dict[str, Any]:
        if kind not in ("device", "group"):
            raise FleetError(400, "BadRequest", "assignments are per 'device' or per 'group'")
        check_id(kind, target)
        check_id("line", line)
        if version is not None:
            version = parse_u32("version", version)

        def upsert() -> None:
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
            self.db.execute(
                "INSERT INTO assignments (kind, target, line, version) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, target) DO UPDATE SET line = excluded.line,"
                " version = excluded.version",
                (kind, target, line, version),
            )
            self.changed()

        self._write(upsert)
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

        def update() -> None:
            self.db.executemany(
                "UPDATE devices SET last_check = ? WHERE id = ?",
                [(at, dev) for dev, (at, _) in seen.items()],
            )
            # the version a check carried: only where it differs from the stored
            # one (rare) is the history consulted, a device at a time
            said = [dev for dev, (_, v) in seen.items() if v is not None]
            for i in range(0, len(said), 500):
                part = said[i : i + 500]
                marks = ", ".join("?" * len(part))
                for dev, last in self.db.all(
                    f"SELECT id, last_version FROM devices WHERE id IN ({marks})", tuple(part)
                ):
                    at, version = seen[dev]
                    if (last is None or int(last) != version) and not self._reported_since(
                        dev, at
                    ):  # a batched check is older news than a report sent since
                        self._version_seen(dev, version, at)

        self._write(update)

    def _nonce(self, device: str, nonce: str | None) -> None:
        """Inside a write: a signed mutation's nonce, refused when seen."""
        if nonce is None:
            return
        cur = self.db.execute(
            "INSERT INTO nonces (device, nonce, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (device, nonce, time.time()),
        )
        if cur.rowcount != 1:
            raise FleetError(401, "Replay", "this request was already received")

    def _consume(self, device: str, kind: str, count: int, nbytes: int, max_count: int,
                 max_bytes: int) -> None:  # fmt: skip
        """Inside a write: counts a device's use of today's quota, or refuses
        the whole request (429) when it would go over."""
        day = int(time.time() // DAY)
        self.db.execute(
            "INSERT INTO usage (device, day, kind, count, bytes) VALUES (?, ?, ?, 0, 0)"
            " ON CONFLICT DO NOTHING",
            (device, day, kind),
        )
        cur = self.db.execute(
            "UPDATE usage SET count = count + ?, bytes = bytes + ? WHERE device = ? AND day = ?"
            " AND kind = ? AND count + ? <= ? AND bytes + ? <= ?",
            (count, nbytes, device, day, kind, count, max_count, nbytes, max_bytes),
        )
        if cur.rowcount != 1:
            raise _over_quota(device, kind, max_count, max_bytes)

    def report(
        self, device: str, body: dict[str, Any], nonce: str | None = None,
        quotas: Quotas = DEFAULT_QUOTAS,
    ) -> None:  # fmt: skip
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
        name = check_text("status_name", body.get("status_name"), NAME_MAX)
        message = check_text("message", body.get("message"), MESSAGE_MAX)

        def insert() -> None:
            if self.db.one("SELECT id FROM devices WHERE id = ?", (device,)) is None:
                raise FleetError(404, "UnknownDevice", f"device {device!r} is not registered")
            self._nonce(device, nonce)
            self._consume(device, "report", 1, 0, quotas.reports, 1 << 62)
            now = self.clock()
            self.db.execute(
                "INSERT INTO reports (device, at, event, version, status, status_name, message,"
                " bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (device, now, event, version, status, name, message, nbytes),
            )
            self._version_seen(device, version, now)  # the version it runs after the event

        self._write(insert)

    def store_quality(self, device: str, body: Any, nonce: str | None = None) -> dict[str, Any]:
        """rollout_store's, after the nonce of the signed request is taken."""
        if nonce is not None:
            self._write(lambda: self._nonce(device, nonce))
        return super().store_quality(device, body)

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

    def prune(self, now: float | None = None) -> None:
        """Forgets nonces past any clock window and quota days before yesterday."""
        from .auth import NONCE_KEEP

        now = time.time() if now is None else now

        def delete() -> None:
            self.db.execute("DELETE FROM nonces WHERE at < ?", (now - NONCE_KEEP,))
            self.db.execute("DELETE FROM usage WHERE day < ?", (int(now // DAY) - 1,))

        self._write(delete)

    # -- field data (issue [7]) ------------------------------------------

    def store_windows(
        self, device: str, data: bytes, nonce: str | None = None, quotas: Quotas = DEFAULT_QUOTAS
    ) -> list[int]:
        """Sample windows POSTed by a device (frames back to back,
        docs/COLLECT.md): every frame is checked (bounds, CRCs, values JSON
        can hold) before anything is stored; then all of them are stored in
        one transaction with the device's quota (all frames or none). Returns
        their ids (``GET /admin/windows``, ``modelota fleet windows``)."""
        check_id("device", device)
        # a device already over its quota costs no parsing (the exact check
        # is repeated in the transaction below)
        used = self.db.one(
            "SELECT count, bytes FROM usage WHERE device = ? AND day = ? AND kind = 'windows'",
            (device, int(time.time() // DAY)),
        )
        if used is not None and (int(used[0]) >= quotas.windows
                                 or int(used[1]) + len(data) > quotas.window_bytes):  # fmt: skip
            raise _over_quota(device, "windows", quotas.windows, quotas.window_bytes)
        frames = split_frames(data, quotas.windows_per_request)

        def insert() -> list[int]:
            if self.db.one("SELECT id FROM devices WHERE id = ?", (device,)) is None:
                raise FleetError(404, "UnknownDevice", f"device {device!r} is not registered")
            self._nonce(device, nonce)
            self._consume(device, "windows", len(frames), len(data), quotas.windows,
                          quotas.window_bytes)  # fmt: skip
            now = self.clock()
            ids = []
            for seq, first, frame in frames:
                sql = ("INSERT INTO windows (device, received_at, seq, first_sample, frame)"
                       " VALUES (?, ?, ?, ?, ?)")  # fmt: skip
                args = (device, now, seq, first, frame)
                if self.db.sqlite:
                    ids.append(int(self.db.execute(sql, args).lastrowid))
                else:
                    row = self.db.one(sql + " RETURNING id", args)
                    assert row is not None
                    ids.append(int(row[0]))
            return ids

        return list(self._write(insert))

    def windows(
        self, after: int = 0, limit: int = 100, device: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored windows with id > ``after``, oldest first."""
        cols = "id, device, received_at, seq, first_sample, frame"
        if device is None:
            rows = self.db.all(
                f"SELECT {cols} FROM windows WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        else:
            check_id("device", device)
            rows = self.db.all(
                f"SELECT {cols} FROM windows WHERE device = ? AND id > ? ORDER BY id LIMIT ?",
                (device, after, limit),
            )
        return [{"id": int(r[0]), "device": r[1], "received_at": float(r[2]), "seq": int(r[3]),
                 "first_sample": int(r[4]), "frame": bytes(r[5])} for r in rows]  # fmt: skip


def _over_quota(device: str, kind: str, max_count: int, max_bytes: int) -> FleetError:
    """429 until the next UTC day."""
    now = time.time()
    left = int((int(now // DAY) + 1) * DAY - now) + 1
    what = f"{max_count} items, {max_bytes} bytes" if max_bytes < 1 << 62 else f"{max_count}"
    return FleetError(429, "QuotaExceeded",
                      f"device {device!r} is over today's {kind} quota ({what} per UTC day)",
                      left)  # fmt: skip


def split_frames(data: bytes, max_frames: int) -> list[tuple[int, int, bytes]]:
    """A POST body of whole window frames -> (seq, first_sample, frame)
    each, after every check the collector makes (bounds, CRCs) and that the
    values are finite (an Edge Impulse file cannot hold NaN or infinity).
    Linear in the body, the values never decoded into Python floats (a MiB
    takes about a millisecond); 400 BadWindow / 413 TooManyWindows."""
    import numpy as np

    from ..collect.frames import HEAD_LEN, FrameError, check_frame, frame_length

    out: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(out) >= max_frames:
            raise FleetError(
                413, "TooManyWindows", f"more than {max_frames} windows in one request"
            )
        try:
            total = frame_length(data[pos : pos + HEAD_LEN])
            frame = data[pos : pos + total]
            _, _, seq, first, body = check_frame(frame)
        except FrameError as e:
            raise FleetError(
                400, "BadWindow", f"frame {len(out)} at byte {pos}: {e.reason}: {e.detail}"
            ) from None
        if not np.isfinite(np.frombuffer(body, dtype="<f4")).all():
            raise FleetError(
                400, "BadWindow",
                f"window {seq}: NaN or infinity cannot be written (JSON has neither)",
            )  # fmt: skip
        out.append((seq, first, frame))
        pos += total
    if not out:
        raise FleetError(400, "BadWindow", "the body holds no sample window")
    return out
