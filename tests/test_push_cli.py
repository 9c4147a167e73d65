"""``modelota push`` as registered by push.add_commands, against sim:// boards."""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import pytest

from modelota.cli import link as push_mod
from modelota.format.payload import pack
from modelota.sim.board import demo_model
from modelota.sim.handlers.protocol_sim import board
from modelota.status import CliError


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="modelota")
    push_mod.add_commands(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(argv)
    return int(args.func(args))


def test_push_command_updates_a_sim_board(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, fp = demo_model(1024, seed=5)
    new = bytes(255 - b for b in weights)
    f = tmp_path / "m.mota"
    f.write_bytes(pack(new, fingerprint=fp, version=4).encode())
    url = "sim://native?size=1024&seed=5&name=cli"
    assert run(["push", "--port", url, str(f), "--window", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"version 4, weights CRC32 {zlib.crc32(new):08x}" in out
    b = board("cli")
    assert b is not None and bytes(b.weights) == new
    with pytest.raises(CliError, match="already current"):
        run(["push", "--port", url, str(f), "--quiet"])


def test_unknown_sim_board_and_port_are_clear_errors(tmp_path: Path) -> None:
    f = tmp_path / "m.mota"
    f.write_bytes(pack(bytes(64), fingerprint=bytes(16), version=2).encode())
    with pytest.raises(CliError, match="cannot open"):
        run(["push", "--port", "sim://nosuchboard", str(f), "--quiet"])
    with pytest.raises(CliError, match="cannot open"):
        run(["push", "--port", "/dev/nonexistent-tty", str(f), "--quiet"])
