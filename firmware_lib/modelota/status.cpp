#include "status.h"

extern "C" const char* modelota_status_str(int status) {
#if MODELOTA_STATUS_STRINGS
    switch (status) {
    case MODELOTA_OK: return "Ok";
    case MODELOTA_BAD_MAGIC: return "BadMagic";
    case MODELOTA_UNSUPPORTED_VERSION: return "UnsupportedVersion";
    case MODELOTA_BAD_HEADER_CRC: return "BadHeaderCrc";
    case MODELOTA_UNSUPPORTED: return "Unsupported";
    case MODELOTA_WRONG_MODEL: return "WrongModel";
    case MODELOTA_WRONG_SIZE: return "WrongSize";
    case MODELOTA_ROLLBACK: return "Rollback";
    case MODELOTA_ALREADY_CURRENT: return "AlreadyCurrent";
    case MODELOTA_WRONG_BASE: return "WrongBase";
    case MODELOTA_TOO_LARGE: return "TooLarge";
    case MODELOTA_BAD_CHUNK: return "BadChunk";
    case MODELOTA_BAD_SEQUENCE: return "BadSequence";
    case MODELOTA_OUT_OF_BOUNDS: return "OutOfBounds";
    case MODELOTA_CHUNK_CRC: return "ChunkCrc";
    case MODELOTA_LAYOUT_MISMATCH: return "LayoutMismatch";
    case MODELOTA_DIGEST_MISMATCH: return "DigestMismatch";
    case MODELOTA_TRUNCATED: return "Truncated";
    case MODELOTA_TRAILING_DATA: return "TrailingData";
    case MODELOTA_ABORTED: return "Aborted";
    case MODELOTA_TIMEOUT: return "Timeout";
    case MODELOTA_STORAGE_IO: return "StorageIo";
    case MODELOTA_BAD_STATE: return "BadState";
    case MODELOTA_INVALID_ARGUMENT: return "InvalidArgument";
    case MODELOTA_BAD_SIGNATURE: return "BadSignature";
    case MODELOTA_UNSIGNED: return "Unsigned";
    default: return "Unknown";
    }
#else
    (void)status;
    return "";
#endif
}
