/*
 * Compiles firmware_lib/modelota/store.cpp into the Arduino library (no
 * copy). Its own unit: its file-local helpers (sz, ...) share names with
 * updater.cpp's, which ModelOTA.cpp compiles.
 */
#include "../firmware_lib/modelota/store.cpp"
