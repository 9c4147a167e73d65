/*
 * Compiles firmware_lib/modelota/http.cpp (the fleet pull, portable core)
 * into the Arduino library. The Client glue, class ModelOTAHttp, is inline
 * in ModelOTAHttp.h: see there why it is not compiled here.
 */
#include "../firmware_lib/modelota/http.cpp"
