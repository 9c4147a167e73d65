"""Every ``modelota`` subcommand fed the mistakes people make: a missing file,
a directory, the wrong kind of file, a server URL without a scheme or with
https:// to a plain server, a bad device id, a wrong token, a server that is
down, the wrong model, a lower version.

Each run is the real command in its own process. Each must fail with exit
code 1 or 2 and exactly one line on stderr, ``modelota...: error: ...``,
naming what is wrong (the expected words are checked), and never print a
Python traceback or the "internal error" line the command prints for an
exception nothing turned into a message (cli/app.py).
"""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet_util import TOKEN, free_port, stop
from modelota import pack
from modelota.fleet.server import spawn
from modelota.models.raw import raw_fingerprint
from modelota.sim.board import demo_model
from payloads import modelota
from tflite_builder import Arch, export, pair, train


@dataclass
class World:
    d: Path  # files
    server: str  # a running modelota serve
    down: str  # a port nothing listens on
    plain: str  # an HTTP server that is not modelota


def _payload(weights: bytes, version: int, fp: bytes) -> bytes:
    return pack(weights, fingerprint=fp, version=version, chunk_size=256).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import numpy as np

    d = tmp_path_factory.mktemp("mistakes")
    w = bytes(range(256)) * 4
    (d / "w.bin").write_bytes(w)
    (d / "small.bin").write_bytes(w[:100])
    (d / "adir").mkdir()
    (d / "notes.txt").write_text("not a model\n")
    (d / "junk.tflite").write_bytes(b"\x00" * 64)
    fp_m = raw_fingerprint("m", len(w))
    (d / "v2.mota").write_bytes(_payload(w, 2, fp_m))
    (d / "v1.mota").write_bytes(_payload(w[::-1], 1, fp_m))
    (d / "other.mota").write_bytes(_payload(w, 3, raw_fingerprint("other", len(w))))
    (d / "cut.mota").write_bytes((d / "v2.mota").read_bytes()[:150])
    # for sim://native?size=1024&seed=5: demo_model's weights and fingerprint
    board_w, board_fp = demo_model(1024, seed=5)
    (d / "board_v2.mota").write_bytes(_payload(board_w[::-1], 2, board_fp))
    (d / "board_wrong.mota").write_bytes(_payload(board_w[::-1], 2, b"\xab" * 16))
    arch = Arch((6, 12, 3), ("relu", "none"), "int8", per_channel=True, tail="softmax")
    old, new = pair(arch, 3)
    (d / "old.tflite").write_bytes(old)
    (d / "new.tflite").write_bytes(new)
    other = Arch((6, 13, 3), ("relu", "none"))
    (d / "other.tflite").write_bytes(export(other, train(other, np.random.default_rng(0))))

    proc, url = spawn(d / "fleet-data", TOKEN)
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    t = threading.Thread(target=plain.serve_forever, daemon=True)
    t.start()
    try:
        r = modelota("fleet", "--server", url, "--token", TOKEN, "upload", "m", d / "v2.mota")
        assert r.returncode == 0, r.stderr
        r = modelota("fleet", "--server", url, "--token", TOKEN, "register", "dev1",
                     "--fingerprint", raw_fingerprint("other", len(w)).hex())  # fmt: skip
        assert r.returncode == 0, r.stderr
        r = modelota("fleet", "--server", url, "--token", TOKEN, "assign", "--device", "dev1", "m")
        assert r.returncode == 0, r.stderr
        yield World(d, url, f"http://127.0.0.1:{free_port()}",
                    f"http://127.0.0.1:{plain.server_address[1]}")  # fmt: skip
    finally:
        plain.shutdown()
        stop(proc)


# (case id, argv with {d} = the files' folder, {server}/{down}/{plain} = URLs, words
# the error must contain)
CASES: list[tuple[str, list[str], str]] = [
    # pack
    ("pack-missing", ["pack", "{d}/nope.bin", "-o", "{d}/o.mota", "--version", "2", "--model",
                      "m"], "nope.bin: no such file"),
    ("pack-dir", ["pack", "{d}/adir", "-o", "{d}/o.mota", "--version", "2", "--model", "m"],
     "adir: is a directory"),
    ("pack-payload-as-weights", ["pack", "{d}/v2.mota", "-o", "{d}/o.mota", "--version", "3",
                                 "--model", "m"], "is a ModelOTA payload, not weights"),
    ("pack-junk-tflite", ["pack", "--base", "{d}/junk.tflite", "{d}/new.tflite", "-o",
                          "{d}/o.mota", "--version", "2"], "junk.tflite"),
    ("pack-no-model", ["pack", "{d}/w.bin", "-o", "{d}/o.mota", "--version", "2"],
     "--model NAME or --fingerprint HEX"),
    ("pack-bad-hex", ["pack", "{d}/w.bin", "-o", "{d}/o.mota", "--version", "2",
                      "--fingerprint", "xyz"], "not hex"),
    ("pack-lower-version", ["pack", "{d}/w.bin", "-o", "{d}/o.mota", "--version", "2",
                            "--model", "m", "--base", "{d}/w.bin", "--delta",
                            "--base-version", "3"], "must be above --base-version 3"),
    ("pack-base-size", ["pack", "{d}/w.bin", "-o", "{d}/o.mota", "--version", "2", "--model",
                        "m", "--base", "{d}/small.bin"], "not the same model"),
    ("pack-output-dir", ["pack", "{d}/w.bin", "-o", "{d}/adir", "--version", "2", "--model",
                         "m"], "adir: is a directory"),
    ("pack-other-arch", ["pack", "--base", "{d}/old.tflite", "{d}/other.tflite", "-o",
                         "{d}/o.mota", "--version", "2"], "not the same architecture"),
    ("pack-missing-key", ["pack", "{d}/w.bin", "-o", "{d}/o.mota", "--version", "2", "--model",
                          "m", "--sign", "{d}/nokey"], "nokey"),
    ("pack-no-version", ["pack", "{d}/w.bin", "-o", "{d}/o.mota"], "--version"),
    ("pack-version-text", ["pack", "{d}/w.bin", "-o", "{d}/o.mota", "--version", "two"],
     "invalid int value"),
    # inspect
    ("inspect-missing", ["inspect", "{d}/nope.mota"], "nope.mota: no such file"),
    ("inspect-dir", ["inspect", "{d}/adir"], "adir: is a directory"),
    ("inspect-text", ["inspect", "{d}/notes.txt"], "BadMagic"),
    ("inspect-truncated", ["inspect", "{d}/cut.mota"], "Truncated"),
    ("inspect-junk-tflite", ["inspect", "{d}/junk.tflite"], "BadMagic"),
    ("inspect-wrong-deployed", ["inspect", "{d}/v2.mota", "--deployed", "{d}/old.tflite"],
     "not the model this payload was made for"),
    ("inspect-deployed-missing", ["inspect", "{d}/v2.mota", "--deployed", "{d}/nope.tflite"],
     "no such file"),
    ("inspect-wrong-weights", ["inspect", "{d}/v2.mota", "--weights", "{d}/small.bin"],
     "do not match"),
    ("inspect-model-option", ["inspect", "{d}/v2.mota", "--model", "{d}/old.tflite"],
     "unrecognized arguments"),
    # fingerprint
    ("fingerprint-missing", ["fingerprint", "{d}/nope.bin", "--model", "m"], "no such file"),
    ("fingerprint-dir", ["fingerprint", "{d}/adir"], "adir"),
    ("fingerprint-junk-tflite", ["fingerprint", "{d}/junk.tflite"], "junk.tflite"),
    ("fingerprint-nothing", ["fingerprint"], "give weight files or --size"),
    ("fingerprint-negative", ["fingerprint", "--size", "-1", "--model", "m"], "negative"),
    # diff
    ("diff-missing", ["diff", "{d}/nope.tflite", "{d}/new.tflite"], "no such file"),
    ("diff-dir", ["diff", "{d}/adir", "{d}/new.tflite"], "is a directory"),
    ("diff-not-tflite", ["diff", "{d}/w.bin", "{d}/new.tflite"], "not a TFLite model"),
    ("diff-other-arch", ["diff", "{d}/old.tflite", "{d}/other.tflite"],
     "old.tflite (old) vs"),
    # keygen
    ("keygen-exists", ["keygen", "{d}/w.bin"], "refusing to overwrite"),
    ("keygen-no-dir", ["keygen", "{d}/nodir/k"], "nodir"),
    # push
    ("push-missing", ["push", "--port", "sim://native", "{d}/nope.mota"], "no such file"),
    ("push-dir", ["push", "--port", "sim://native", "{d}/adir"], "is a directory"),
    ("push-weights", ["push", "--port", "sim://native", "{d}/w.bin"], "not a valid payload"),
    ("push-bad-port", ["push", "--port", "/dev/nonexistent-tty", "{d}/v2.mota"], "cannot open"),
    ("push-unknown-board", ["push", "--port", "sim://nosuchboard", "{d}/v2.mota"],
     "unknown simulated board"),
    ("push-wrong-model", ["push", "--quiet", "--port", "sim://native?size=1024&seed=5",
                          "{d}/board_wrong.mota"], "wrong model"),
    ("push-lower-version", ["push", "--quiet", "--port",
                            "sim://native?size=1024&seed=5&version=5", "{d}/board_v2.mota"],
     "rollback refused"),
    ("push-no-port", ["push", "{d}/v2.mota"], "--port"),
    # collect
    ("collect-bad-port", ["collect", "--port", "/dev/nonexistent-tty", "{d}/out"],
     "cannot open"),
    ("collect-count", ["collect", "--port", "sim://native", "--count", "0", "{d}/out"],
     "--count"),
    # serve / export
    ("serve-port-range", ["serve", "--port", "70000"], "not a port"),
    ("serve-data-is-file", ["serve", "--port", "0", "--data", "{d}/w.bin", "--token", "t"],
     "w.bin"),
    ("export-no-data", ["export", "{d}/tree", "--data", "{d}/nodata"], "not a modelota serve"),
    # prepare-ei
    ("prepare-ei-not-export", ["prepare-ei", "{d}/adir"], "not an Edge Impulse"),
    ("prepare-ei-missing", ["prepare-ei", "{d}/nope"], "nope"),
    # fleet (admin client)
    ("fleet-no-scheme", ["fleet", "--server", "127.0.0.1:8080", "--token", "t", "devices"],
     "did you mean http://127.0.0.1:8080"),
    ("fleet-ftp", ["fleet", "--server", "ftp://x/", "--token", "t", "devices"],
     "not a server URL"),
    ("fleet-bad-url-port", ["fleet", "--server", "http://127.0.0.1:99999", "--token", "t",
                            "devices"], "bad port"),
    ("fleet-https-to-http", ["fleet", "--server", "{https_server}", "--token", "t", "devices"],
     "TLS"),
    ("fleet-down", ["fleet", "--server", "{down}", "--token", "t", "devices"],
     "connection refused"),
    ("fleet-unknown-host", ["fleet", "--server", "http://no-such-host.invalid:8080",
                            "--token", "t", "devices"], "unknown host"),
    ("fleet-not-modelota", ["fleet", "--server", "{plain}", "--token", "t", "devices"],
     "is this the right server URL?"),
    ("fleet-wrong-token", ["fleet", "--server", "{server}", "--token", "wrong", "devices"],
     "HTTP 401"),
    ("fleet-no-token", ["fleet", "--server", "{server}", "devices"], "admin token is needed"),
    ("fleet-bad-id", ["fleet", "--server", "{server}", "--token", TOKEN, "register",
                      "bad id/../x"], "device id 'bad id/../x' is not valid"),
    ("fleet-upload-missing", ["fleet", "--server", "{server}", "--token", TOKEN, "upload", "m",
                              "{d}/nope.mota"], "nope.mota: no such file"),
    ("fleet-upload-dir", ["fleet", "--server", "{server}", "--token", TOKEN, "upload", "m",
                          "{d}/adir"], "is a directory"),
    ("fleet-upload-weights", ["fleet", "--server", "{server}", "--token", TOKEN, "upload", "m",
                              "{d}/w.bin"], "not a valid payload"),
    ("fleet-upload-lower-version", ["fleet", "--server", "{server}", "--token", TOKEN, "upload",
                                    "m", "{d}/v1.mota"], "409 Rollback"),
    ("fleet-upload-other-model", ["fleet", "--server", "{server}", "--token", TOKEN, "upload",
                                  "m", "{d}/other.mota"], "HTTP 409"),
    ("fleet-assign-unknown-device", ["fleet", "--server", "{server}", "--token", TOKEN,
                                     "assign", "--device", "nobody", "m"], "HTTP 404"),
    ("fleet-assign-no-line", ["fleet", "--server", "{server}", "--token", TOKEN, "assign",
                              "--device", "dev1", "nosuchline"], "HTTP 404"),
    ("fleet-token-after-action", ["fleet", "devices", "--server", "{down}", "--token", "t"],
     "connection refused"),
    # device (simulated device client)
    # rollout
    ("rollout-no-scheme", ["rollout", "--server", "127.0.0.1:8080", "--token", "t", "list"],
     "did you mean http://127.0.0.1:8080"),
    ("rollout-down", ["rollout", "--server", "{down}", "--token", "t", "list"],
     "connection refused"),
    ("rollout-wrong-token", ["rollout", "--server", "{server}", "--token", "wrong", "list"],
     "token"),
    ("rollout-unknown-line", ["rollout", "--server", "{server}", "--token", TOKEN, "create",
                              "nosuchline", "2", "--group", "g"], "nosuchline"),
    ("rollout-bad-waves", ["rollout", "--server", "{server}", "--token", TOKEN, "create", "m",
                           "2", "--group", "g", "--waves", "50%,10%"], "waves"),
    ("rollout-unknown-id", ["rollout", "--server", "{server}", "--token", TOKEN, "show", "999"],
     "999"),
    ("device-bad-id", ["device", "{d}/w.bin", "--model", "m", "--id", "bad id/../x",
                       "--server", "{server}"], "device id 'bad id/../x' is not valid"),
    ("device-no-scheme", ["device", "{d}/w.bin", "--model", "m", "--id", "a",
                          "--server", "127.0.0.1:8080"], "did you mean"),
    ("device-https-to-http", ["device", "{d}/w.bin", "--model", "m", "--id", "a",
                              "--server", "{https_server}"], "TLS"),
    ("device-down", ["device", "{d}/w.bin", "--model", "m", "--id", "a", "--server", "{down}"],
     "connection refused"),
    ("device-missing", ["device", "{d}/nope.bin", "--model", "m", "--id", "a", "--server",
                        "{server}"], "no such file"),
    ("device-dir", ["device", "{d}/adir", "--model", "m", "--id", "a", "--server", "{server}"],
     "is a directory"),
    ("device-payload-as-factory", ["device", "{d}/v2.mota", "--model", "m", "--id", "a",
                                   "--server", "{server}"], "payload, not the factory"),
    ("device-unknown", ["device", "{d}/w.bin", "--model", "m", "--id", "nobody", "--server",
                        "{server}"], "HTTP 404"),
    ("device-wrong-model", ["device", "{d}/w.bin", "--model", "wrong", "--id", "dev1",
                            "--server", "{server}"], "HTTP 409"),
    ("device-state-dir", ["device", "{d}/w.bin", "--model", "m", "--id", "a", "--server",
                          "{server}", "--state", "{d}/adir"], "is a directory"),
    ("device-cacert-missing", ["device", "{d}/w.bin", "--model", "m", "--id", "a", "--server",
                               "https://127.0.0.1:1", "--cacert", "{d}/nope.pem"],
     "no such CA certificate file"),
    ("device-cacert-not-pem", ["device", "{d}/w.bin", "--model", "m", "--id", "a", "--server",
                               "https://127.0.0.1:1", "--cacert", "{d}/notes.txt"],
     "not a PEM"),
    ("device-cacert-on-http", ["device", "{d}/w.bin", "--model", "m", "--id", "a", "--server",
                               "{server}", "--cacert", "{d}/notes.txt"], "for https://"),
    # the command itself
    ("unknown-command", ["frobnicate"], "invalid choice"),
]  # fmt: skip


IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def runs(world: World) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case's command, run a few at a time (they change nothing)."""
    subst = {
        "d": str(world.d),
        "server": world.server,
        "https_server": world.server.replace("http://", "https://"),
        "down": world.down,
        "plain": world.plain,
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(modelota, *[a.format(**subst) for a in argv])
            for name, argv, _ in CASES
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize(("name", "words"), [(c[0], c[2]) for c in CASES], ids=IDS)
def test_a_mistake_is_one_line_error(
    runs: dict[str, subprocess.CompletedProcess[str]], name: str, words: str
) -> None:
    r = runs[name]
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr + r.stdout, err
    assert "internal error" not in err, err
    assert r.returncode in (1, 2), (r.returncode, r.stdout, err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("modelota") and ": error: " in err, err
    assert words in err, err


def test_every_subcommand_is_exercised() -> None:
    """A new subcommand gets its mistakes here too."""
    from modelota.cli.app import COMMANDS

    tried = {c[1][0] for c in CASES}
    missing = set(COMMANDS) - tried - {"demo"}  # demo takes no input to get wrong
    assert not missing, f"no mistake cases for: {sorted(missing)}"


def test_nothing_written_when_packing_fails(world: World) -> None:
    out = world.d / "never.mota"
    r = modelota("pack", world.d / "w.bin", "-o", out, "--version", "2", "--model", "m",
                 "--base", world.d / "w.bin", "--delta", "--base-version", "3")  # fmt: skip
    assert r.returncode == 1 and not out.exists()


def test_fleet_and_device_answer_in_tables_and_json(world: World) -> None:
    """The default output is text for people; --json is the server's answer."""
    import json

    base = ["fleet", "--server", world.server, "--token", TOKEN]
    r = modelota(*base, "devices")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["device", "group", "runs"] and "dev1" in lines[1]
    assert "{" not in r.stdout
    r = modelota(*base, "devices", "--json")
    assert r.returncode == 0, r.stderr
    assert [d["id"] for d in json.loads(r.stdout)] == ["dev1"]
    r = modelota(*base, "payloads")
    assert r.returncode == 0 and " v2 " in r.stdout and "Z (" in r.stdout, r.stdout


def test_help_of_every_command_shows_its_defaults() -> None:
    """``--help`` shows each option's default once, by the formatter: never
    "(default: None)" and never a default the help text also writes;
    fleet's actions too."""
    import argparse

    from modelota.cli.app import COMMANDS, build_parser
    from modelota.cli.argparsing import HelpFormatter

    def parsers(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    yield from parsers(sub)

    shown = 0
    for cmd in COMMANDS:
        top = build_parser(cmd)
        for p in list(parsers(top))[1:]:
            if p.prog.split()[1:2] != [cmd]:
                continue
            assert p.formatter_class is HelpFormatter, p.prog
            fmt = HelpFormatter(p.prog)
            for a in p._actions:
                text = fmt._get_help_string(a) or ""
                expanded = text.replace("%(default)s", str(a.default))
                assert expanded.count("(default") <= 1, (p.prog, a.option_strings, text)
                assert "(default: None)" not in expanded, (p.prog, a.option_strings)
                shown += "%(default)s" in text
            assert p.format_help().startswith("usage: modelota")
    assert shown > 20
    r = modelota("push", "--help")
    assert r.returncode == 0 and "(default: 1.0)" in " ".join(r.stdout.split()), r.stdout


def test_json_works_wherever_offered(world: World) -> None:
    """Every command that offers --json prints one JSON document with it (a
    new --json needs a case here: the parser is asked which commands offer it)."""
    import json

    from modelota.cli.app import COMMANDS, build_parser

    d = world.d
    fleet = ["fleet", "--server", world.server, "--token", TOKEN]
    cases = {
        "pack": ["pack", d / "w.bin", "-o", d / "j.mota", "--version", "2", "--model", "m"],
        "inspect": ["inspect", d / "old.tflite"],
        "fingerprint": ["fingerprint", "--model", "m", "--size", "10"],
        "diff": ["diff", d / "old.tflite", d / "new.tflite"],
        "push": ["push", "--port", "sim://native?size=1024&seed=5", d / "board_v2.mota"],
        "fleet": [*fleet, "payloads"],
        "rollout": ["rollout", "--server", world.server, "--token", TOKEN, "create", "m", "2",
                    "--group", "json-group"],
        "device": [
            "device", d / "w.bin", "--model", "m", "--id", "json-dev", "--server", world.server
        ],
    }
    offered = set()
    for cmd in COMMANDS:
        p = build_parser(cmd)
        sub = next(a for a in p._actions if hasattr(a, "choices") and a.choices)
        if "--json" in sub.choices[cmd]._option_string_actions:  # type: ignore[union-attr]
            offered.add(cmd)
    assert offered == set(cases), offered ^ set(cases)
    for argv in (["register", "json-dev"], ["assign", "--device", "json-dev", "m"]):
        r = modelota(*fleet, *argv)
        assert r.returncode == 0, r.stderr
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = dict(pool.map(lambda kv: (kv[0], modelota(*kv[1], "--json")), cases.items()))
    for cmd, r in runs.items():
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, (cmd, r.stderr)
        assert r.stdout.lstrip()[:1] in ("{", "["), (cmd, r.stdout, r.stderr)
        doc = json.loads(r.stdout)
        assert isinstance(doc, dict | list) and doc, (cmd, r.stdout)
    assert json.loads(runs["pack"].stdout)["output"].endswith("j.mota")
    assert json.loads(runs["inspect"].stdout)["kind"] == "tflite"
    assert json.loads(runs["push"].stdout)["version"] == 2
    assert json.loads(runs["diff"].stdout)["changed_tensors"] > 0
    polls = json.loads(runs["device"].stdout)["polls"]
    assert [(p["outcome"], p["version"]) for p in polls] == [("updated", 2)]
    for action in ("devices", "reports", "register json-dev"):
        r = modelota(*fleet, *action.split(), "--json")
        assert r.returncode == 0 and json.loads(r.stdout) is not None, (action, r.stderr)
