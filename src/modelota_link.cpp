/* Compiles firmware_lib/modelota/link.cpp (the serial update protocol) into the Arduino library. */
#include "../firmware_lib/modelota/link.cpp"
