"""Staged rollouts, model-quality summaries and version history in the
fleet database (the SQL half of rollout.py; mixed into db.Fleet).

All rollout state is in the database, so every server replica answers and
decides alike. Every change of a rollout (an admin's or the server's own)
bumps its ``step`` with a compare-and-set ``UPDATE ... WHERE step = ?`` and
records an event keyed by (rollout, step) in the same transaction: two
replicas that decide the same thing at once both try the same step, one
wins, the other changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import FleetError, check_id, parse_u32
from .rollout import (
    ACTIVE,
    MAX_CLASSES,
    Decision,
    Policy,
    Quality,
    Verdict,
    WaveStats,
    bucket,
    decide,
    judge_quality,
    wave_of,
)

ROLLOUT_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    id BIGINT PRIMARY KEY,
    line TEXT NOT NULL,
    version BIGINT NOT NULL,
    grp TEXT NOT NULL,
    from_version BIGINT,
    policy TEXT NOT NULL,
    state TEXT NOT NULL,
    wave INTEGER NOT NULL,
    wave_started_at DOUBLE PRECISION,
    step BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_active ON rollouts (grp)
    WHERE state IN ('ready', 'running', 'paused');
CREATE TABLE IF NOT EXISTS rollout_events (
    rollout BIGINT NOT NULL,
    step BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    wave INTEGER NOT NULL,
    reason TEXT NOT NULL,
    data TEXT,
    PRIMARY KEY (rollout, step)
);
CREATE TABLE IF NOT EXISTS quality (
    device TEXT NOT NULL,
    version BIGINT NOT NULL,
    line TEXT,
    at DOUBLE PRECISION NOT NULL,
    n BIGINT NOT NULL,
    counts TEXT NOT NULL,
    conf_bp INTEGER NOT NULL,
    labelled BIGINT NOT NULL,
    correct BIGINT NOT NULL,
    PRIMARY KEY (device, version)
);
CREATE TABLE IF NOT EXISTS version_changes (
    device TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS version_changes_at ON version_changes (at);
CREATE INDEX IF NOT EXISTS reports_at ON reports (at);
"""

ACTIONS = ("start", "pause", "resume", "abort")
QUALITY_FORMAT = 1
QUALITY_N_MAX = 0xFFFF  # the firmware counts a window in 16 bits
_COLS = (
    "id, line, version, grp, from_version, policy, state, wave, wave_started_at, step, reason,"
    " created_at, updated_at"
)


@dataclass
class Rollout:
    id: int
    line: str
    version: int
    group: str
    from_version: int | None
    policy: Policy
    state: str
    wave: int  # 0-based index of the open wave
    wave_started_at: float | None
    step: int
    reason: str
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> Rollout:
        return cls(
            int(row[0]), row[1], int(row[2]), row[3], None if row[4] is None else int(row[4]),
            Policy.from_json(json.loads(row[5])), row[6], int(row[7]),
            None if row[8] is None else float(row[8]), int(row[9]), row[10], float(row[11]),
            float(row[12]),
        )  # fmt: skip

    def offers(self, device_wave: int) -> bool:
        """Whether a device of that wave is given the new version now."""
        return self.state == "running" and device_wave <= self.wave


class RolloutMixin:
    """Rollout, quality and history methods of db.Fleet (which provides
    ``db``, ``clock`` and ``changed()``)."""

    db: Any
    clock: Callable[[], float]
    target: Callable[[str], Any]  # db.Fleet.target: the payload a device is given

    def changed(self) -> None:  # pragma: no cover - db.Fleet's
        raise NotImplementedError

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.begin()
        try:
            yield
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    # -- rollouts: reading ---------------------------------------------------

    def rollout(self, rid: int) -> Rollout:
        row = self.db.one(f"SELECT {_COLS} FROM rollouts WHERE id = ?", (rid,))
        if row is None:
            raise FleetError(404, "UnknownRollout", f"no rollout {rid}")
        return Rollout.of(row)

    def rollouts(self, states: tuple[str, ...] | None = None) -> list[Rollout]:
        rows = self.db.all(f"SELECT {_COLS} FROM rollouts ORDER BY id")
        out = [Rollout.of(r) for r in rows]
        return out if states is None else [r for r in out if r.state in states]

    def active_rollout(self, group: str) -> Rollout | None:
        row = self.db.one(
            f"SELECT {_COLS} FROM rollouts WHERE grp = ? AND state IN ('ready', 'running',"
            " 'paused')",
            (group,),
        )
        return None if row is None else Rollout.of(row)

    def rollout_version(self, device: str, group: str) -> tuple[bool, str, int | None]:
        """(governed, line, version) for a device of ``group`` without its own
        assignment: governed is False when no active rollout manages the group."""
        r = self.active_rollout(group)
        if r is None:
            return False, "", None
        if r.offers(wave_of(r.policy.waves, bucket(r.line, device))):
            return True, r.line, r.version
        return True, r.line, r.from_version

    def rollout_stamp(self) -> tuple[int, int]:
        """Changes whenever any rollout changes (steps only go up): a replica
        that sees it move drops its cached answers, even without a NOTIFY."""
        row = self.db.one("SELECT COUNT(*), COALESCE(SUM(step), 0) FROM rollouts")
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def rollout_events(self, rid: int) -> list[dict[str, Any]]:
        rows = self.db.all(
            "SELECT step, at, actor, action, wave, reason, data FROM rollout_events"
            " WHERE rollout = ? ORDER BY step",
            (rid,),
        )
        return [
            {"step": int(s), "at": float(at), "actor": actor, "action": action,
             "wave": int(w) + 1, "reason": reason, "numbers": json.loads(data) if data else None}
            for s, at, actor, action, w, reason, data in rows
        ]  # fmt: skip

    def _members(self, r: Rollout) -> list[tuple[str, int | None, int]]:
        """(device, version it runs, wave index) of the devices the rollout
        manages: its group's, less those with their own assignment."""
        own = {t for (t,) in self.db.all("SELECT target FROM assignments WHERE kind = 'device'")}
        rows = self.db.all("SELECT id, last_version FROM devices WHERE grp = ?", (r.group,))
        return [
            (d, None if v is None else int(v), wave_of(r.policy.waves, bucket(r.line, d)))
            for d, v in rows
            if d not in own
        ]

    def _failures(self, devices: set[str], since: float) -> dict[str, str]:
        """device -> status name of its latest failure report since ``since``."""
        rows = self.db.all(
            "SELECT device, status_name, status FROM reports WHERE at >= ? AND status < 0"
            " AND event IN ('apply', 'download') ORDER BY at",
            (since,),
        )
        return {d: (name or str(st)) for d, name, st in rows if d in devices}

    def _quality_of(self, version: int | None, devices: dict[str, int | None]) -> Quality:
        """The version's summaries from the devices that run it now."""
        q = Quality()
        if version is None:
            return q
        rows = self.db.all(
            "SELECT device, n, counts, conf_bp, labelled, correct FROM quality WHERE version = ?",
            (version,),
        )
        for dev, n, counts, conf_bp, labelled, correct in rows:
            if dev in devices and devices[dev] == version:
                q.add(int(n), json.loads(counts), int(conf_bp), int(labelled), int(correct))
        return q

    def rollout_stats(self, r: Rollout) -> tuple[list[WaveStats], Verdict]:
        """Per-wave numbers and the quality verdict of a rollout now."""
        members = self._members(r)
        since = r.wave_started_at if r.wave_started_at is not None else r.created_at
        failures = self._failures({d for d, _, _ in members}, since)
        waves = [WaveStats(i, 0, 0, 0, {}, since) for i in range(len(r.policy.waves))]
        for d, v, w in members:
            s = waves[w]
            s.devices += 1
            if v is not None and v >= r.version:
                s.updated += 1
            elif d in failures:
                s.failed += 1
                s.statuses[failures[d]] = s.statuses.get(failures[d], 0) + 1
        runs = {d: v for d, v, _ in members}
        new = self._quality_of(r.version, runs)
        base = self._quality_of(r.from_version, runs)
        return waves, judge_quality(new, base, r.policy, r.version, r.from_version)

    def rollout_json(self, r: Rollout, events: bool = True) -> dict[str, Any]:
        waves, verdict = self.rollout_stats(r)
        pending = ""
        if r.state == "running":
            pending = self._decide(r, waves, verdict).reason
        doc: dict[str, Any] = {
            "id": r.id, "line": r.line, "version": r.version, "group": r.group,
            "from_version": r.from_version, "state": r.state, "wave": r.wave + 1,
            "waves": [
                {"wave": s.index + 1, "percent": r.policy.waves[s.index], "devices": s.devices,
                 "updated": s.updated, "failed": s.failed, "statuses": s.statuses,
                 "open": r.state != "ready" and s.index <= r.wave}
                for s in waves
            ],
            "policy": r.policy.to_json(), "wave_started_at": r.wave_started_at,
            "created_at": r.created_at, "updated_at": r.updated_at, "reason": r.reason,
            "pending": pending, "quality": verdict.numbers, "quality_text": verdict.text,
        }  # fmt: skip
        if events:
            doc["events"] = self.rollout_events(r.id)
        return doc

    # -- rollouts: changing --------------------------------------------------

    def create_rollout(
        self, line: str, version: Any, group: str, policy: Any, start: bool = False
    ) -> Rollout:
        check_id("line", line)
        check_id("group", group)
        version = parse_u32("version", version)
        try:
            pol = Policy.from_json(policy)
        except ValueError as e:
            raise FleetError(400, "BadPolicy", str(e)) from e
        now = self.clock()
        for _ in range(5):  # a replica creating another rollout at once takes the id
            try:
                with self._tx():
                    r = self._insert_rollout(line, version, group, pol, now)
            except self.db.integrity:
                if self.active_rollout(group) is not None:
                    msg = f"group {group!r} already has an active rollout"
                    raise FleetError(409, "RolloutActive", msg) from None
                continue
            self.changed()
            return self.act(r.id, "start") if start else r
        raise FleetError(409, "Conflict", "could not allocate a rollout id; retry")

    def _insert_rollout(
        self, line: str, version: int, group: str, pol: Policy, now: float
    ) -> Rollout:
        if not self.db.one(
            "SELECT sha256 FROM payloads WHERE line = ? AND version = ? AND base_version = 0",
            (line, version),
        ):
            raise FleetError(404, "UnknownVersion", f"line {line!r} has no version {version}")
        active = self.active_rollout(group)
        if active is not None:
            raise FleetError(
                409, "RolloutActive",
                f"group {group!r} is in rollout {active.id} ({active.state}): abort it first",
            )  # fmt: skip
        cur = self.db.one(
            "SELECT line, version FROM assignments WHERE kind = 'group' AND target = ?", (group,)
        )
        from_version: int | None = None
        if cur is not None:
            if cur[0] != line:
                raise FleetError(
                    409, "WrongLine", f"group {group!r} runs line {cur[0]!r}, not {line!r}"
                )
            if cur[1] is not None:
                from_version = int(cur[1])
            else:  # "the latest": pinned to the latest below the new version
                row = self.db.one(
                    "SELECT MAX(version) FROM payloads WHERE line = ? AND base_version = 0"
                    " AND version < ?",
                    (line, version),
                )
                from_version = None if row is None or row[0] is None else int(row[0])
        if from_version is not None and from_version >= version:
            raise FleetError(
                409, "Rollback",
                f"group {group!r} is assigned v{from_version}: a rollout goes to a newer version",
            )  # fmt: skip
        row = self.db.one("SELECT COALESCE(MAX(id), 0) + 1 FROM rollouts")
        rid = int(row[0]) if row else 1
        reason = f"created: {group!r} from v{from_version} to {line} v{version}"
        self.db.execute(
            f"INSERT INTO rollouts ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, line, version, group, from_version, json.dumps(pol.to_json()), "ready", 0,
             None, 1, reason, now, now),
        )  # fmt: skip
        self._event(rid, 1, now, "admin", "create", 0, reason, {"policy": pol.to_json()})
        return self.rollout(rid)

    def _event(
        self, rid: int, step: int, at: float, actor: str, action: str, wave: int, reason: str,
        data: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        self.db.execute(
            "INSERT INTO rollout_events (rollout, step, at, actor, action, wave, reason, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, step, at, actor, action, wave, reason, data and json.dumps(data)),
        )

    def _move(
        self, r: Rollout, actor: str, action: str, state: str, wave: int, reason: str,
        data: dict[str, Any] | None, reset_wave_clock: bool,
    ) -> bool:  # fmt: skip
        """Compare-and-set from ``r.step``: False (nothing changed) when
        another request or replica changed the rollout first."""
        now = self.clock()
        with self._tx():
            started = now if reset_wave_clock else r.wave_started_at
            cur = self.db.execute(
                "UPDATE rollouts SET state = ?, wave = ?, wave_started_at = ?, step = step + 1,"
                " reason = ?, updated_at = ? WHERE id = ? AND step = ?",
                (state, wave, started, reason, now, r.id, r.step),
            )
            if cur.rowcount != 1:
                return False
            self._event(r.id, r.step + 1, now, actor, action, wave, reason, data)
            if state in ("done", "aborted"):  # the group is pinned where the rollout left it
                pinned = r.version if state == "done" else r.from_version
                self.db.execute(
                    "DELETE FROM assignments WHERE kind = 'group' AND target = ?", (r.group,)
                )
                if pinned is not None:
                    self.db.execute(
                        "INSERT INTO assignments (kind, target, line, version)"
                        " VALUES ('group', ?, ?, ?)",
                        (r.group, r.line, pinned),
                    )
        self.changed()
        return True

    def act(self, rid: int, action: str, note: str = "") -> Rollout:
        """An admin's start, pause, resume or abort."""
        if action not in ACTIONS:
            raise FleetError(400, "BadRequest", f"action must be one of {', '.join(ACTIONS)}")
        for _ in range(5):
            r = self.rollout(rid)
            allowed = {"start": ("ready",), "pause": ("running",), "resume": ("paused",),
                       "abort": ACTIVE}[action]  # fmt: skip
            if r.state not in allowed:
                raise FleetError(
                    409, "BadState", f"rollout {rid} is {r.state}: cannot {action} it"
                )
            state = {"start": "running", "pause": "paused", "resume": "running",
                     "abort": "aborted"}[action]  # fmt: skip
            why = f"{action} by admin" + (f": {note}" if note else "")
            if action == "abort":
                why += f"; group {r.group!r} stays on v{r.from_version}"
            # starting or resuming opens the wave's soak and failure count anew
            if self._move(r, "admin", action, state, r.wave, why, None,
                          action in ("start", "resume")):  # fmt: skip
                return self.rollout(rid)
        raise FleetError(409, "Conflict", f"rollout {rid} keeps changing; retry")

    def _decide(self, r: Rollout, waves: list[WaveStats], verdict: Verdict) -> Decision:
        w = waves[r.wave]
        w.opened_at = r.wave_started_at if r.wave_started_at is not None else r.created_at
        return decide(r.policy, r.version, r.from_version, w, verdict, self.clock())

    def evaluate_rollouts(self) -> list[dict[str, Any]]:
        """The server's own decisions on every running rollout (called by
        each replica's loop and after device reports). Returns the
        decisions this call applied."""
        applied: list[dict[str, Any]] = []
        for r in self.rollouts(("running",)):
            waves, verdict = self.rollout_stats(r)
            d = self._decide(r, waves, verdict)
            if d.action == "none":
                continue
            state, wave, reset = {
                "pause": ("paused", r.wave, False),
                "advance": ("running", r.wave + 1, True),
                "complete": ("done", r.wave, False),
            }[d.action]
            if self._move(r, "server", d.action, state, wave, d.reason, d.numbers, reset):
                applied.append({"rollout": r.id, "action": d.action, "reason": d.reason})
        return applied

    # -- model quality -------------------------------------------------------

    def store_quality(self, device: str, body: Any) -> dict[str, Any]:
        """A device's inference summary for the version it runs (docs/FLEET.md),
        filed under the line the device is assigned."""
        check_id("device", device)
        q = parse_quality(body)
        if self.db.one("SELECT id FROM devices WHERE id = ?", (device,)) is None:
            raise FleetError(404, "UnknownDevice", f"device {device!r} is not registered")
        target = self.target(device)
        line = None if target is None else target.line
        now = self.clock()
        with self._tx():
            self.db.execute(
                "INSERT INTO quality (device, version, line, at, n, counts, conf_bp, labelled,"
                " correct) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, version) DO"
                " UPDATE SET line = excluded.line, at = excluded.at, n = excluded.n,"
                " counts = excluded.counts, conf_bp = excluded.conf_bp,"
                " labelled = excluded.labelled, correct = excluded.correct",
                (device, q["version"], line, now, q["n"], json.dumps(q["counts"]), q["conf_bp"],
                 q["labelled"], q["correct"]),
            )  # fmt: skip
            self._version_seen(device, q["version"], now)
        return q

    def quality_summary(self) -> list[dict[str, Any]]:
        """Summaries added up per (line, version) over the devices that run it."""
        runs = {d: (None if v is None else int(v))
                for d, v in self.db.all("SELECT id, last_version FROM devices")}  # fmt: skip
        agg: dict[tuple[str, int], Quality] = {}
        for dev, version, line, n, counts, conf_bp, labelled, correct in self.db.all(
            "SELECT device, version, line, n, counts, conf_bp, labelled, correct FROM quality"
        ):
            if runs.get(dev) != int(version):
                continue
            q = agg.setdefault((line or "", int(version)), Quality())
            q.add(int(n), json.loads(counts), int(conf_bp), int(labelled), int(correct))
        return [
            {"line": line, "version": v, **q.to_json()} for (line, v), q in sorted(agg.items())
        ]

    # -- version history -----------------------------------------------------

    def _version_seen(self, device: str, version: int | None, at: float) -> None:
        """Records the device's version, and a history row when it changed
        (call inside a transaction)."""
        if version is None:
            return
        row = self.db.one("SELECT last_version FROM devices WHERE id = ?", (device,))
        if row is None:
            return
        if row[0] is None or int(row[0]) != version:
            self.db.execute(
                "INSERT INTO version_changes (device, at, version) VALUES (?, ?, ?)",
                (device, at, version),
            )
            self.db.execute("UPDATE devices SET last_version = ? WHERE id = ?", (version, device))

    def _reported_since(self, device: str, at: float) -> bool:
        """Whether the device sent a report or a quality summary (which carry
        the version it runs) at or after ``at``: a batched check written
        later must not put its older version back."""
        for table in ("reports", "quality"):
            row = self.db.one(
                f"SELECT MAX(at) FROM {table} WHERE device = ? AND version IS NOT NULL", (device,)
            )
            if row is not None and row[0] is not None and float(row[0]) >= at:
                return True
        return False

    def version_history(self) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT device, at, version FROM version_changes ORDER BY at, device")
        return [{"device": d, "at": float(at), "version": int(v)} for d, at, v in rows]


def parse_quality(body: Any) -> dict[str, Any]:
    """Checks a quality report (docs/FLEET.md "Model quality"): every key
    present and consistent, else a 400 naming the first problem."""

    def bad(msg: str) -> FleetError:
        return FleetError(400, "BadQuality", msg)

    if not isinstance(body, dict):
        raise bad("a quality report is a JSON object")
    keys = {"format", "version", "n", "counts", "conf_bp", "labelled", "correct"}
    if set(body) != keys:
        missing = sorted(keys - set(body))
        raise bad(f"missing key {missing[0]!r}" if missing else
                  f"unknown key {sorted(set(body) - keys)[0]!r}")  # fmt: skip
    if body["format"] != QUALITY_FORMAT:
        raise bad(f"format must be {QUALITY_FORMAT}")

    def count(key: str, v: Any, hi: int) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
            raise bad(f"{key} must be an integer 0..{hi}")
        return v

    version = parse_u32("version", body["version"])
    n = count("n", body["n"], QUALITY_N_MAX)
    counts = body["counts"]
    if not isinstance(counts, list) or not 1 <= len(counts) <= MAX_CLASSES:
        raise bad(f"counts must be a list of 1..{MAX_CLASSES} integers")
    counts = [count("counts[]", c, QUALITY_N_MAX) for c in counts]
    if sum(counts) != n:
        raise bad(f"counts add up to {sum(counts)}, not n = {n}")
    if n == 0:
        raise bad("n must be at least 1")
    conf = count("conf_bp", body["conf_bp"], 10000)
    labelled = count("labelled", body["labelled"], n)
    correct = count("correct", body["correct"], labelled)
    return {"format": QUALITY_FORMAT, "version": version, "n": n, "counts": counts,
            "conf_bp": conf, "labelled": labelled, "correct": correct}  # fmt: skip
