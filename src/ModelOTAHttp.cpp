/*
 * Compiles firmware_lib/modelota/http.cpp (the fleet pull, portable core)
 * into the Arduino library. The Client glue, class ModelOTAHttp, is inline
 * in ModelOTAHttp.h: see there why it is not compiled here.
 */
#include "../firmware_lib/modelota/http.cpp"
/* Signed requests need SHA-256, which ModelOTA.cpp compiles only when
 * payload digests use it (off on AVR by default): then it comes from here
 * (unused functions are dropped by the linker in sketches that do not pull). */
#if MODELOTA_HTTP_AUTH && !MODELOTA_SHA256
#include "../firmware_lib/modelota/sha256.cpp"
#endif
