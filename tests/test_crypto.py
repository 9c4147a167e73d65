"""The device's cryptographic primitives (firmware_lib/modelota/sha256, sha512,
ed25519) through the native module, against published vectors and against
reference libraries (hashlib, pynacl = libsodium, cryptography = OpenSSL).

Small-order public keys: the device rejects the 8 torsion points (the all-zero
key among them) as libsodium does; RFC 8032 itself does not, and
test_small_order_keys_are_rejected shows the forgery that check prevents.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelota.sim.native import load

nacl_signing = pytest.importorskip("nacl.signing", reason="pynacl is in the test extras")
nacl_exceptions = pytest.importorskip("nacl.exceptions")
ed25519_ref = pytest.importorskip(
    "cryptography.hazmat.primitives.asymmetric.ed25519", reason="cryptography is in the test extras"
)

ROOT = Path(__file__).resolve().parent.parent
CRYPTO_SOURCES = [
    ROOT / "firmware_lib" / "modelota" / n for n in ("sha256.cpp", "sha512.cpp", "ed25519.cpp")
]

# --------------------------------------------------------------------------------------------
# Access to the C functions


def _hash(name: str, parts: list[bytes]) -> bytes:
    n = load()
    ctx = n.ffi.new(f"modelota_{name}*")
    getattr(n.lib, f"modelota_{name}_init")(ctx)
    update = getattr(n.lib, f"modelota_{name}_update")
    for p in parts:
        update(ctx, n.ffi.from_buffer(p), len(p))
    out = n.ffi.new("uint8_t[64]")
    getattr(n.lib, f"modelota_{name}_final")(ctx, out)
    return bytes(out)[: 32 if name == "sha256" else 64]


def sha256(*parts: bytes) -> bytes:
    return _hash("sha256", list(parts))


def sha512(*parts: bytes) -> bytes:
    return _hash("sha512", list(parts))


def verify(signature: bytes, msg: bytes, key: bytes) -> int:
    n = load()
    assert len(signature) == 64 and len(key) == 32
    return int(n.lib.modelota_ed25519_verify(signature, n.ffi.from_buffer(msg), len(msg), key))


def nacl_verdict(signature: bytes, msg: bytes, key: bytes) -> int:
    try:
        nacl_signing.VerifyKey(key).verify(msg, signature)
    except (nacl_exceptions.BadSignatureError, ValueError, TypeError):
        return 0
    return 1


def openssl_verdict(signature: bytes, msg: bytes, key: bytes) -> int:
    try:
        ed25519_ref.Ed25519PublicKey.from_public_bytes(key).verify(signature, msg)
    except Exception:  # InvalidSignature, or a key OpenSSL refuses to load
        return 0
    return 1


# --------------------------------------------------------------------------------------------
# SHA-256 / SHA-512: FIPS 180-4 example messages (NIST CSRC "Examples with intermediate
# values") and the one-million-'a' message of the NIST test suite.

ABC_896 = (
    b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
    b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
)
SHA256_VECTORS = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (ABC_896, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]
SHA512_VECTORS = [
    (
        b"",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
    (
        b"abc",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    ),
    (
        ABC_896,
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
    ),
    (
        b"a" * 1_000_000,
        "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
        "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b",
    ),
]


@pytest.mark.parametrize(("msg", "digest"), SHA256_VECTORS, ids=lambda v: str(len(v)))
def test_sha256_nist_vectors(msg: bytes, digest: str) -> None:
    assert sha256(msg).hex() == digest


@pytest.mark.parametrize(("msg", "digest"), SHA512_VECTORS, ids=lambda v: str(len(v)))
def test_sha512_nist_vectors(msg: bytes, digest: str) -> None:
    assert sha512(msg).hex() == digest


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(st.binary(max_size=700), st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_sha256_streaming_matches_hashlib(data: bytes, cuts: list[int]) -> None:
    assert sha256(*_split(data, cuts)) == hashlib.sha256(data).digest()


@given(st.binary(max_size=900), st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_sha512_streaming_matches_hashlib(data: bytes, cuts: list[int]) -> None:
    assert sha512(*_split(data, cuts)) == hashlib.sha512(data).digest()


@pytest.mark.parametrize("name", ["sha256", "sha512"])
def test_padding_boundaries(name: str) -> None:
    """Every length around the one- and two-block padding edges, fed byte by byte too."""
    ref: Callable[[bytes], Any] = getattr(hashlib, name)
    block = 64 if name == "sha256" else 128
    for length in [*range(block - 20, block + 2), *range(2 * block - 20, 2 * block + 2)]:
        data = bytes((i * 7 + length) & 0xFF for i in range(length))
        assert _hash(name, [data]) == ref(data).digest(), length
        assert _hash(name, [bytes([b]) for b in data]) == ref(data).digest(), length


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sha256", "sha512"])
def test_messages_longer_than_4_gib(name: str) -> None:
    """The byte count crosses 2^32 (SHA-256 carries count_lo into count_hi)."""
    n = load()
    ctx = n.ffi.new(f"modelota_{name}*")
    getattr(n.lib, f"modelota_{name}_init")(ctx)
    update = getattr(n.lib, f"modelota_{name}_update")
    ref = getattr(hashlib, name)()
    chunk = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(4096):
        update(ctx, chunk, len(chunk))
        ref.update(chunk)
    update(ctx, b"tail", 4)
    ref.update(b"tail")
    out = n.ffi.new("uint8_t[64]")
    getattr(n.lib, f"modelota_{name}_final")(ctx, out)
    assert bytes(out)[: ref.digest_size] == ref.digest()


def test_hash_with_zero_length_updates_and_null_pointer() -> None:
    n = load()
    ctx = n.ffi.new("modelota_sha256*")
    n.lib.modelota_sha256_init(ctx)
    n.lib.modelota_sha256_update(ctx, n.ffi.NULL, 0)
    n.lib.modelota_sha256_update(ctx, b"ab", 2)
    n.lib.modelota_sha256_update(ctx, n.ffi.NULL, 0)
    n.lib.modelota_sha256_update(ctx, b"c", 1)
    out = n.ffi.new("uint8_t[32]")
    n.lib.modelota_sha256_final(ctx, out)
    assert bytes(out) == hashlib.sha256(b"abc").digest()


SHA256_HOST = r"""
#include <stdio.h>
#include <string.h>
#include "modelota/sha256.h"
static unsigned char msg[4096];
int main() {
    static char hex[8200];
    while (scanf("%8199s", hex) == 1) {
        const size_t n = (strlen(hex) - 1) / 2; /* leading "x" */
        for (size_t i = 0; i < n; ++i) sscanf(hex + 1 + 2 * i, "%2hhx", &msg[i]);
        modelota_sha256 c;
        unsigned char d[32];
        modelota_sha256_init(&c);
        modelota_sha256_update(&c, msg, n / 2);
        modelota_sha256_update(&c, msg + n / 2, n - n / 2);
        modelota_sha256_final(&c, d);
        for (int i = 0; i < 32; ++i) printf("%02x", d[i]);
        printf("\n");
    }
    return 0;
}
"""


def test_sha256_avr_rotations_on_the_host(tmp_path: Path) -> None:
    """AVR builds rotate by whole bytes first (MODELOTA_SHA256_BYTE_ROTATE there); the
    same code built on the host against the vectors and hashlib."""
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    src = tmp_path / "sha.cpp"
    src.write_text(SHA256_HOST)
    exe = tmp_path / "sha"
    subprocess.run(
        ["g++", "-std=c++11", "-O1", "-Wall", "-Wextra", "-Werror", "-Wconversion",
         "-DMODELOTA_SHA256_BYTE_ROTATE", f"-I{ROOT / 'firmware_lib'}", str(src),
         str(ROOT / "firmware_lib" / "modelota" / "sha256.cpp"), "-o", str(exe)],
        check=True,
    )  # fmt: skip
    rng = random.Random(11)
    msgs = [m for m, _ in SHA256_VECTORS if len(m) < 4096]
    msgs += [rng.randbytes(n) for n in (*range(50, 70), *range(110, 135), 1000, 4095)]
    out = subprocess.run(
        [str(exe)], input="".join(f"x{m.hex()}\n" for m in msgs), capture_output=True,
        text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out == [hashlib.sha256(m).hexdigest() for m in msgs]


# --------------------------------------------------------------------------------------------
# Ed25519: RFC 8032 section 7.1 test vectors (secret key, public key, message, signature),
# transcribed as data.

_MSG_1024 = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)

RFC8032_VECTORS = {
    "TEST 1": (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    "TEST 2": (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
        "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    "TEST 3": (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
        "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    "TEST 1024": (
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        _MSG_1024,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f45"
        "28ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    "TEST SHA(abc)": (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
}


@pytest.mark.parametrize("name", list(RFC8032_VECTORS))
def test_rfc8032_vectors(name: str) -> None:
    seed, key, msg, sig = (bytes.fromhex(h) for h in RFC8032_VECTORS[name])
    # The transcription is right: libsodium derives the same key and signature from the seed.
    signer = nacl_signing.SigningKey(seed)
    assert bytes(signer.verify_key) == key
    assert signer.sign(msg).signature == sig
    assert verify(sig, msg, key) == 1
    # Any one changed bit anywhere makes it fail.
    for i in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert verify(bytes(bad), msg, key) == 0
    assert verify(sig, msg + b"\x00", key) == 0
    if msg:
        assert verify(sig, msg[:-1], key) == 0


def test_rfc8032_test_sha_abc_message_is_sha512_of_abc() -> None:
    assert RFC8032_VECTORS["TEST SHA(abc)"][2] == sha512(b"abc").hex()
    assert len(bytes.fromhex(_MSG_1024)) == 1023


def test_null_arguments() -> None:
    n = load()
    _seed, key, _, sig = (bytes.fromhex(h) for h in RFC8032_VECTORS["TEST 1"])
    # TEST 1 signs the empty message: a NULL pointer with length 0 is that message.
    assert n.lib.modelota_ed25519_verify(sig, n.ffi.NULL, 0, key) == 1
    assert n.lib.modelota_ed25519_verify(sig, n.ffi.NULL, 1, key) == 0
    assert n.lib.modelota_ed25519_verify(n.ffi.NULL, b"", 0, key) == 0
    assert n.lib.modelota_ed25519_verify(sig, b"", 0, n.ffi.NULL) == 0


seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=300)


@given(seeds, messages)
def test_random_keys_and_messages_verify(seed: bytes, msg: bytes) -> None:
    signer = nacl_signing.SigningKey(seed)
    sig = signer.sign(msg).signature
    assert verify(sig, msg, bytes(signer.verify_key)) == 1


@given(seeds, messages, st.sampled_from(["signature", "message", "key"]), st.integers(0, 1 << 16))
def test_single_bit_flips_agree_with_libsodium_and_openssl(
    seed: bytes, msg: bytes, where: str, position: int
) -> None:
    signer = nacl_signing.SigningKey(seed)
    sig, key = signer.sign(msg).signature, bytes(signer.verify_key)
    if where == "message" and not msg:
        msg = b"\x00"  # nothing to flip in the empty message: a one-byte append instead
    else:
        target = {"signature": sig, "message": msg, "key": key}[where]
        flipped = bytearray(target)
        bit = position % (8 * len(flipped))
        flipped[bit // 8] ^= 1 << (bit % 8)
        if where == "signature":
            sig = bytes(flipped)
        elif where == "message":
            msg = bytes(flipped)
        else:
            key = bytes(flipped)
    ours = verify(sig, msg, key)
    assert ours == nacl_verdict(sig, msg, key) == openssl_verdict(sig, msg, key)
    assert ours == 0


@given(st.binary(min_size=64, max_size=64), st.binary(min_size=32, max_size=32), messages)
def test_random_inputs_agree_with_libsodium(sig: bytes, key: bytes, msg: bytes) -> None:
    assert verify(sig, msg, key) == nacl_verdict(sig, msg, key) == 0


# --------------------------------------------------------------------------------------------
# Edge cases built with a small Python model of edwards25519 (test helper, RFC 8032 5.1)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]  # extended coordinates X, Y, Z, T
IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s: int, p: Point) -> Point:
    q = IDENTITY
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode(p: Point) -> bytes:
    zi = pow(p[2], P - 2, P)
    x, y = p[0] * zi % P, p[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(b: bytes) -> Point | None:
    n = int.from_bytes(b, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P != 0:
        if (v * x * x + u) % P != 0:
            return None
        x = x * SQRT_M1 % P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


_BY = 4 * pow(5, P - 2, P) % P
BASE = _decode(_BY.to_bytes(32, "little"))
assert BASE is not None


def _same(p: Point, q: Point) -> bool:
    return _encode(p) == _encode(q)


def torsion_points() -> list[bytes]:
    """Encodings of the 8 points of order dividing 8 (the identity among them)."""
    y = 2
    while True:
        p = _decode(y.to_bytes(32, "little"))
        if p is not None:
            t = _mul(L, p)  # the prime-order part vanishes: t is a torsion point
            if not _same(_mul(4, t), IDENTITY):  # order 8: its multiples are all 8
                break
        y += 1
    return sorted({_encode(_mul(i, t)) for i in range(8)})


def test_model_agrees_with_libsodium() -> None:
    seed, key, *_ = (bytes.fromhex(h) for h in RFC8032_VECTORS["TEST 1"])
    a = int.from_bytes(hashlib.sha512(seed).digest()[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    assert BASE is not None and _encode(_mul(a, BASE)) == key
    assert len(torsion_points()) == 8


def test_non_canonical_s_is_rejected() -> None:
    """S + L satisfies the group equation as S does ([S + L]B = [S]B): only the S < L check
    (RFC 8032 5.1.7) stops this malleability."""
    _seed, key, msg, sig = (bytes.fromhex(h) for h in RFC8032_VECTORS["TEST 2"])
    s = int.from_bytes(sig[32:], "little")
    for bad_s in (s + L, s + 2 * L, s + 15 * L):
        assert bad_s < 2**256
        forged = sig[:32] + bad_s.to_bytes(32, "little")
        assert verify(forged, msg, key) == 0
        assert nacl_verdict(forged, msg, key) == 0
    for edge in (L, L + 1, 2**256 - 1):
        assert verify(sig[:32] + edge.to_bytes(32, "little"), msg, key) == 0
    # L - 1 is canonical: the verdict then depends on the equation only (false here).
    assert verify(sig[:32] + (L - 1).to_bytes(32, "little"), msg, key) == 0
    assert verify(sig, msg, key) == 1


@pytest.mark.parametrize("index", range(8))
def test_small_order_keys_are_rejected(index: int) -> None:
    """With a torsion point A, [k]A takes at most 8 values, so R = [S]B - [k]A can be
    guessed: the cofactorless RFC 8032 equation then holds without any secret. The device
    refuses such keys (so does libsodium); a key made by any real key generation is never
    one of them."""
    key = torsion_points()[index]
    a = _decode(key)
    assert a is not None and BASE is not None
    s = 0x1234567 + index
    r_point = _mul(s, BASE)  # guess [k]A = identity, true for 1 in 8 messages at least
    r = _encode(r_point)
    for counter in range(64):
        msg = b"forged %d" % counter
        k = int.from_bytes(hashlib.sha512(r + key + msg).digest(), "little") % L
        if _same(_add(r_point, _mul(k, a)), _mul(s, BASE)):
            break
    else:
        pytest.fail("no message made the guess right")
    sig = r + s.to_bytes(32, "little")
    # The RFC 8032 equation [S]B = R + [k]A holds for this forgery...
    assert _same(_mul(s, BASE), _add(_decode(r) or IDENTITY, _mul(k, a)))
    # ...and the device still says no, as libsodium does.
    assert verify(sig, msg, key) == 0
    assert nacl_verdict(sig, msg, key) == 0


def test_all_zero_key_is_a_small_order_point() -> None:
    """An unprovisioned key slot of zeros decodes (y = 0, x = sqrt(-1)): order 4."""
    zero = bytes(32)
    p = _decode(zero)
    assert p is not None and not _same(_mul(2, p), IDENTITY) and _same(_mul(4, p), IDENTITY)
    assert zero in torsion_points()
    erased = b"\xff" * 32  # erased flash: y = 2^255 - 1 >= p, not a point at all
    assert _decode(erased) is None
    sig = RFC8032_VECTORS["TEST 1"][3]
    assert verify(bytes.fromhex(sig), b"", zero) == 0
    assert verify(bytes.fromhex(sig), b"", erased) == 0


def test_keys_that_are_not_points_are_rejected() -> None:
    """y >= p, "negative zero" x, and y with no x on the curve. Signatures under such keys
    cannot be made, so this only shows the device returns 0 (like libsodium), not why."""
    _seed, _key, msg, sig = (bytes.fromhex(h) for h in RFC8032_VECTORS["TEST 1"])
    not_square = next(
        y for y in range(2, 1000) if _decode(y.to_bytes(32, "little")) is None
    ).to_bytes(32, "little")
    for bad in (
        P.to_bytes(32, "little"),
        (P + 1).to_bytes(32, "little"),
        (1 | (1 << 255)).to_bytes(32, "little"),  # x = 0 with the sign bit set
        not_square,
    ):
        assert _decode(bad) is None
        assert verify(sig, msg, bad) == 0 == nacl_verdict(sig, msg, bad)


def test_mixed_order_r_is_rejected_cofactorless() -> None:
    """R' = R + T (T of order 8) fails the cofactorless check that RFC 8032 5.1.7 and the
    device use ([8]-multiplied equations would accept some of these)."""
    _seed, key, msg, sig = (bytes.fromhex(h) for h in RFC8032_VECTORS["TEST 3"])
    r = _decode(sig[:32])
    assert r is not None
    for t in torsion_points():
        tp = _decode(t)
        assert tp is not None
        r2 = _encode(_add(r, tp))
        if r2 == sig[:32]:
            continue  # T is the identity
        assert verify(r2 + sig[32:], msg, key) == 0


# --------------------------------------------------------------------------------------------
# White box: a harness #includes ed25519.cpp (its helpers are file-local) and answers one
# command per line, checked against Python integers and the model above. Built with ASan and
# UBSan. This reaches inputs no signature can: field elements beyond p, scalars in
# [2^252, L), non-canonical keys.

HARNESS = r"""
#include "ed25519.cpp"
#include <stdio.h>
#include <string.h>

static int hexval(char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
static void rd(const char* h, uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        out[i] = static_cast<uint8_t>(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
    }
}
static void wr(const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; ++i) printf("%02x", b[i]);
}
static void wr_fe(const ed_fe a) {
    uint8_t b[32];
    ed_fe_pack(b, a);
    wr(b, 32);
}

int main() {
    char cmd[16], a[200], b[200], c[200];
    uint8_t x[64], y[64];
    while (scanf("%15s", cmd) == 1) {
        ed_fe f, g, h;
        if (!strcmp(cmd, "reduce")) {
            if (scanf("%199s", a) != 1) return 1;
            rd(a, x, 64);
            ed_scalar_reduce(y, x);
            wr(y, 32);
        } else if (!strcmp(cmd, "canon")) {
            if (scanf("%199s", a) != 1) return 1;
            rd(a, x, 32);
            printf("%d", ed_scalar_canonical(x));
        } else if (!strcmp(cmd, "limbs")) {
            for (int i = 0; i < 16; ++i) {
                long v;
                if (scanf("%ld", &v) != 1) return 1;
                f[i] = static_cast<int32_t>(v);
            }
            wr_fe(f);
        } else if (!strcmp(cmd, "mul") || !strcmp(cmd, "add") || !strcmp(cmd, "sub")) {
            if (scanf("%199s %199s", a, b) != 2) return 1;
            rd(a, x, 32);
            rd(b, y, 32);
            ed_fe_unpack(f, x);
            ed_fe_unpack(g, y);
            if (cmd[0] == 'm') ed_fe_mul(h, f, g);
            else if (cmd[0] == 'a') ed_fe_add(h, f, g);
            else ed_fe_sub(h, f, g);
            wr_fe(h);
        } else if (!strcmp(cmd, "inv") || !strcmp(cmd, "pow")) {
            if (scanf("%199s", a) != 1) return 1;
            rd(a, x, 32);
            ed_fe_unpack(f, x);
            if (cmd[0] == 'i') ed_fe_invert(h, f);
            else ed_fe_pow2523(h, f);
            wr_fe(h);
        } else if (!strcmp(cmd, "decode")) {
            if (scanf("%199s", a) != 1) return 1;
            rd(a, x, 32);
            ed_point p;
            if (ed_point_decode_neg(&p, x)) {
                ed_point_encode(y, &p);
                printf("1 ");
                wr(y, 32);
            } else {
                printf("0");
            }
        } else if (!strcmp(cmd, "dsm")) {
            if (scanf("%199s %199s %199s", a, b, c) != 3) return 1;
            uint8_t s[32], k[32], n[32], out[32];
            rd(a, s, 32);
            rd(b, k, 32);
            rd(c, n, 32);
            ed_point p;
            if (!ed_point_decode_neg(&p, n)) return 2;
            ed_double_scalar(out, s, k, &p);
            wr(out, 32);
        } else if (!strcmp(cmd, "verify")) {
            static char m[4096];
            uint8_t sig[64], key[32], msg[2048];
            if (scanf("%199s %199s %4095s", a, b, m) != 3) return 1;
            rd(a, sig, 64);
            rd(b, key, 32);
            const size_t n = (strlen(m) - 1) / 2; /* the message hex has a leading "x" */
            rd(m + 1, msg, n);
            printf("%d", modelota_ed25519_verify(sig, msg, n, key));
        } else {
            return 3;
        }
        printf("\n");
    }
    return 0;
}
"""


@pytest.fixture(scope="module", params=["mul64", "mul16"])
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[list[str]], list[str]]:
    """mul64: the field multiplication of 32-bit targets and the host; mul16: the one
    AVR compiles (MODELOTA_ED25519_MUL16), run here on the host."""
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    variant = ["-DMODELOTA_ED25519_MUL16=1"] if request.param == "mul16" else []
    out = tmp_path_factory.mktemp("harness")
    src = out / "harness.cpp"
    src.write_text(HARNESS)
    exe = out / "harness"
    modelota = ROOT / "firmware_lib" / "modelota"
    subprocess.run(
        ["g++", "-std=c++11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{modelota}", *variant,
         str(src), str(modelota / "sha512.cpp"), "-o", str(exe)],
        check=True,
    )  # fmt: skip

    def run(lines: list[str]) -> list[str]:
        r = subprocess.run(
            [str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        assert "runtime error" not in r.stderr, r.stderr[-3000:]
        return r.stdout.splitlines()

    return run


def _le(v: int, n: int = 32) -> str:
    return v.to_bytes(n, "little").hex()


def test_scalar_reduction_mod_l(harness: Callable[[list[str]], list[str]]) -> None:
    rng = random.Random(8032)
    values = [0, 1, L - 1, L, L + 1, 2**512 - 1, 2**256 - 1, 2**252, 2**253 - 1]
    values += [m * L + e for m in (1, 2, 15, 16, 17, 2**100, 2**259 - 1) for e in (-1, 0, 1)]
    values += [(2**512 // L) * L + e for e in (-1, 0, 1, L - 1)]
    values += [rng.getrandbits(512) for _ in range(400)]
    values += [rng.getrandbits(rng.randrange(1, 512)) for _ in range(400)]
    values = [v for v in values if 0 <= v < 2**512]
    got = harness([f"reduce {_le(v, 64)}" for v in values])
    assert got == [_le(v % L) for v in values]


def test_scalar_canonical_check(harness: Callable[[list[str]], list[str]]) -> None:
    rng = random.Random(1)
    values = [0, 1, L - 1, L, L + 1, 2**252, 2**253, 2**256 - 1, L - 2**128, L + 2**128]
    values += [rng.getrandbits(256) for _ in range(100)]
    values += [L + rng.randrange(-(2**130), 2**130) for _ in range(100)]
    got = harness([f"canon {_le(v)}" for v in values])
    assert got == [str(int(v < L)) for v in values]


def test_field_pack_of_unreduced_limbs(harness: Callable[[list[str]], list[str]]) -> None:
    """ed_fe_pack must give the canonical value for any limbs the arithmetic can leave
    behind (within +-2^18), including totals that are negative or above 2p."""
    rng = random.Random(2)
    cases = [[0] * 16, [0xFFFF] * 16, [-1] * 16, [(1 << 18) - 1] * 16, [-(1 << 18) + 1] * 16]
    for v in (P - 1, P, P + 1, 2 * P - 1, 2 * P, 2 * P + 1, 2**255 - 1, 2**256 - 1, 2**256 - 39):
        cases.append([(v >> (16 * i)) & 0xFFFF for i in range(16)])
    for _ in range(600):
        bound = rng.choice([1 << 16, 1 << 17, 1 << 18])
        cases.append([rng.randrange(-bound + 1, bound) for _ in range(16)])
    got = harness(["limbs " + " ".join(map(str, c)) for c in cases])
    want = [_le(sum(x << (16 * i) for i, x in enumerate(c)) % P) for c in cases]
    assert got == want


def test_field_arithmetic(harness: Callable[[list[str]], list[str]]) -> None:
    rng = random.Random(3)
    xs = [0, 1, 2, P - 1, 2**255 - 1, 2**255 - 19, 2**255 - 20, 19, 38]
    xs += [rng.getrandbits(255) for _ in range(150)]
    lines, want = [], []
    for a in xs:
        b = rng.choice(xs)
        ra, rb = a % P, b % P
        lines += [f"mul {_le(a)} {_le(b)}", f"add {_le(a)} {_le(b)}", f"sub {_le(a)} {_le(b)}"]
        want += [_le(ra * rb % P), _le((ra + rb) % P), _le((ra - rb) % P)]
        lines += [f"inv {_le(a)}", f"pow {_le(a)}"]
        want += [_le(pow(ra, P - 2, P)), _le(pow(ra, (P - 5) // 8, P))]
    assert harness(lines) == want


def test_point_decoding_matches_rfc8032(harness: Callable[[list[str]], list[str]]) -> None:
    """Decoding (5.1.3) of canonical, non-canonical (y >= p), negative-zero and off-curve
    encodings: the harness re-encodes -A, so a good decode gives the key with the sign
    bit flipped (x != 0)."""
    rng = random.Random(4)
    encs = [bytes(32), (1).to_bytes(32, "little"), (1 | 1 << 255).to_bytes(32, "little")]
    encs += [(y | s << 255).to_bytes(32, "little") for y in range(0, 40) for s in (0, 1)]
    encs += [((P + e) | s << 255).to_bytes(32, "little") for e in range(19) for s in (0, 1)]
    encs += [(P - 1).to_bytes(32, "little"), (2**255 - 1).to_bytes(32, "little")]
    encs += [rng.getrandbits(256).to_bytes(32, "little") for _ in range(300)]
    encs += torsion_points()
    got = harness([f"decode {e.hex()}" for e in encs])
    for e, line in zip(encs, got, strict=True):
        p = _decode(e)
        if p is None:
            assert line == "0", e.hex()
        else:
            neg = (P - p[0]) % P, p[1], 1, (P - p[3]) % P
            assert line == "1 " + _encode(neg).hex(), e.hex()


def test_joint_scalar_multiplication(harness: Callable[[list[str]], list[str]]) -> None:
    """[s]B + [k](-A) for scalars with bit 252 set (S in [2^252, L) is canonical but no
    signature exercise it in practice) and for random ones."""
    assert BASE is not None
    rng = random.Random(5)
    keys = [bytes.fromhex(v[1]) for v in RFC8032_VECTORS.values()]
    scalars = [0, 1, 2, L - 1, 2**252, 2**252 + 1, L - 2**100, 2**251]
    lines, want = [], []
    for _ in range(40):
        s = rng.choice([*scalars, rng.randrange(L), rng.randrange(2**252, L)])
        k = rng.choice([*scalars, rng.randrange(L), rng.randrange(2**252, L)])
        key = rng.choice(keys)
        a = _decode(key)
        assert a is not None
        neg_a = (P - a[0]) % P, a[1], a[2], (P - a[3]) % P
        lines.append(f"dsm {_le(s)} {_le(k)} {key.hex()}")
        want.append(_encode(_add(_mul(s, BASE), _mul(k, neg_a))).hex())
    assert harness(lines) == want


def test_verify_in_both_multiplications(harness: Callable[[list[str]], list[str]]) -> None:
    """The RFC 8032 vectors, random signatures and their one-bit corruptions through the
    harness build, so the AVR multiplication (mul16) verifies real signatures too."""
    rng = random.Random(7)
    lines, want = [], []
    for _seed, key, msg, sig in RFC8032_VECTORS.values():
        if len(msg) // 2 <= 2048:
            lines.append(f"verify {sig} {key} x{msg}")
            want.append("1")
    for i in range(60):
        signer = nacl_signing.SigningKey(rng.randbytes(32))
        msg = rng.randbytes(rng.randrange(0, 200))
        sig = bytearray(signer.sign(msg).signature)
        key = bytes(signer.verify_key).hex()
        lines.append(f"verify {sig.hex()} {key} x{msg.hex()}")
        want.append("1")
        sig[i % 64] ^= 1 << (i % 8)
        lines.append(f"verify {sig.hex()} {key} x{msg.hex()}")
        want.append("0")
    assert harness(lines) == want


def test_public_key_valid() -> None:
    n = load()
    rng = random.Random(6)
    keys = [bytes.fromhex(v[1]) for v in RFC8032_VECTORS.values()]
    keys += [*torsion_points(), bytes(32), b"\xff" * 32, P.to_bytes(32, "little")]
    keys += [((P + e) | s << 255).to_bytes(32, "little") for e in range(19) for s in (0, 1)]
    keys += [rng.getrandbits(256).to_bytes(32, "little") for _ in range(200)]
    small = set(torsion_points())
    for key in keys:
        want = int(_decode(key) is not None and key not in small)
        assert n.lib.modelota_ed25519_public_key_valid(key) == want, key.hex()
    assert n.lib.modelota_ed25519_public_key_valid(n.ffi.NULL) == 0


# --------------------------------------------------------------------------------------------
# The sources build warning-free for the device targets


CROSS_TARGETS = {
    "cortex-m4": ("arm-none-eabi-g++", "arm-none-eabi-size", ["-mcpu=cortex-m4", "-mthumb"]),
    "atmega2560": ("avr-g++", "avr-size", ["-mmcu=atmega2560"]),
    "host-clang": ("clang++", "size", []),
}
STRICT = ["-std=c++11", "-Os", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wshadow",
          "-fno-exceptions", "-fno-rtti", "-ffunction-sections"]  # fmt: skip


@pytest.mark.parametrize("target", list(CROSS_TARGETS))
def test_sources_compile_warning_free(target: str, tmp_path: Path) -> None:
    cxx, size, flags = CROSS_TARGETS[target]
    if shutil.which(cxx) is None or shutil.which(size) is None:
        pytest.skip(f"{cxx} not installed (scripts/test.sh installs it)")
    objs = []
    for src in CRYPTO_SOURCES:
        obj = tmp_path / (src.stem + ".o")
        r = subprocess.run(
            [cxx, *flags, *STRICT, "-c", str(src), "-o", str(obj)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 0 and not r.stderr, r.stderr
        objs.append(str(obj))
    out = subprocess.run([size, *objs], capture_output=True, text=True, check=True).stdout
    text = sum(int(line.split()[0]) for line in out.splitlines()[1:])
    print(f"\n{target}: .text of sha256+sha512+ed25519 = {text} bytes (-Os)\n{out}")
    assert text > 0


def test_sources_build_as_one_unit_with_the_core(tmp_path: Path) -> None:
    """The Arduino library compiles firmware_lib sources by #including them into one
    unit: no file-local name of the crypto files may clash with the core's."""
    unit = tmp_path / "unity.cpp"
    names = ["crc32.cpp", "status.cpp", "decode.cpp", "updater.cpp", "sha256.cpp", "sha512.cpp",
             "ed25519.cpp"]
    unit.write_text("".join(f'#include "modelota/{n}"\n' for n in names))
    r = subprocess.run(
        ["g++", *STRICT, f"-I{ROOT / 'firmware_lib'}", f"-I{ROOT / 'firmware_lib' / 'modelota'}",
         "-c", str(unit), "-o", str(tmp_path / "unity.o")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0 and not r.stderr, r.stderr


def test_no_heap_and_no_libc_beyond_mem_functions(tmp_path: Path) -> None:
    """The objects call nothing outside themselves but the mem* functions (no malloc)."""
    undefined: set[str] = set()
    for src in CRYPTO_SOURCES:
        obj = tmp_path / (src.stem + ".o")
        subprocess.run(["g++", *STRICT, "-c", str(src), "-o", str(obj)], check=True)
        out = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True)
        undefined |= {ln.split()[-1] for ln in out.stdout.splitlines() if ln.strip()}
    own = {"modelota_sha512_init", "modelota_sha512_update", "modelota_sha512_final"}
    assert undefined - own <= {"memcpy", "memmove", "memset", "memcmp"}, undefined


@pytest.mark.skipif(os.environ.get("MODELOTA_NATIVE") is not None, reason="already a variant")
def test_vectors_under_asan_and_ubsan() -> None:
    """The RFC vectors and the random-key properties again, in the ASan + UBSan build."""
    from native_variants import build_variant, python, sanitizer_runtime

    runtime = sanitizer_runtime()
    if runtime is None:
        pytest.skip("gcc's libasan.so not found: cannot preload AddressSanitizer into Python")
    module = build_variant("_modelota_asan", sanitize=True, defines={"MODELOTA_CRC32_TABLE": "1"})
    env = dict(os.environ)
    env.update(
        MODELOTA_NATIVE=str(module),
        LD_PRELOAD=runtime,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        MODELOTA_EXAMPLES="40",
    )
    r = subprocess.run(
        [python(), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
         "-k", "rfc8032 or random or flips or non_canonical or small_order or sha"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and "runtime error" not in r.stderr, tail
