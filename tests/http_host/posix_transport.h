/*
 * modelota_http_transport over POSIX TCP sockets, for the host test program
 * (tests/http_host/pull_main.cpp) and the host run of the WiFiPull sketch.
 */
#ifndef MODELOTA_POSIX_TRANSPORT_H
#define MODELOTA_POSIX_TRANSPORT_H

#include <stdint.h>

#include "modelota/http.h"

struct posix_conn {
    int fd;
    uint32_t connects; /* connections opened so far */
};

/* Fills io with callbacks over conn (fd starts closed). */
void posix_transport(modelota_http_transport* io, posix_conn* conn);

#endif
