"""Wire-format constants of docs/FORMAT.md (no imports: the CLI reads them
while building its parser)."""

MAGIC = b"MOTA"
FORMAT_VERSION = 2  # what the packer writes by default
FORMAT_V1 = 1
FORMAT_V2 = 2
FORMAT_VERSIONS = (FORMAT_V1, FORMAT_V2)
HEADER_LEN = 96  # v1 header; also the largest v2 header
HEADER_CRC_OFFSET = 92
FINGERPRINT_LEN = 16
DIGEST_LEN = 32
DIGEST_CRC32 = 1
DIGEST_SHA256 = 2
DIGEST_NAMES = {DIGEST_CRC32: "crc32", DIGEST_SHA256: "sha256"}
FLAG_DELTA = 0x0001
FLAG_SIGNED = 0x0002  # a 64-byte Ed25519 signature of the header follows it
KNOWN_FLAGS = FLAG_DELTA | FLAG_SIGNED
SIGNATURE_LEN = 64
PUBLIC_KEY_LEN = 32
CHUNK_HEAD_LEN = 12  # v1
CHUNK_TAIL_LEN = 4
CHUNK_OVERHEAD = CHUNK_HEAD_LEN + CHUNK_TAIL_LEN  # v1
V2_FIXED_LEN = 24  # magic, version, header_len, digest_type, flags, fingerprint
V2_MIN_HEADER_LEN = 37  # five 1-byte varints, a CRC32 digest, the header CRC
V2_MAX_HEADER_LEN = HEADER_LEN
V2_MAX_CHUNK_HEAD = 16  # enc, then up to three 5-byte varints
U32_MAX = 0xFFFFFFFF
