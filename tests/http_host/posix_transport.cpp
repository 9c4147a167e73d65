#include "posix_transport.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

namespace {

int tcp_connect(void* ctx, const char* host, uint16_t port) {
    posix_conn* c = static_cast<posix_conn*>(ctx);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    char service[8];
    snprintf(service, sizeof(service), "%u", static_cast<unsigned>(port));
    addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0) {
        return -1;
    }
    int fd = -1;
    for (addrinfo* a = res; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    ++c->connects;
    return 0;
}

int tcp_write(void* ctx, const uint8_t* data, uint32_t n) {
    posix_conn* c = static_cast<posix_conn*>(ctx);
    while (n > 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return -1;
        }
        data += w;
        n -= static_cast<uint32_t>(w);
    }
    return 0;
}

int32_t tcp_read(void* ctx, uint8_t* dst, uint32_t cap, uint32_t wait_ms) {
    posix_conn* c = static_cast<posix_conn*>(ctx);
    if (c->fd < 0) {
        return -1;
    }
    pollfd pfd;
    pfd.fd = c->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    int ms = wait_ms > 1000u ? 1000 : static_cast<int>(wait_ms);
    int r = poll(&pfd, 1, ms);
    if (r == 0) {
        return 0;
    }
    if (r < 0) {
        return -1;
    }
    ssize_t got = recv(c->fd, dst, cap, 0);
    if (got <= 0) {
        return -1; /* 0: the peer closed after its last byte */
    }
    return static_cast<int32_t>(got);
}

void tcp_close(void* ctx) {
    posix_conn* c = static_cast<posix_conn*>(ctx);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

uint32_t mono_ms(void*) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000u +
                                 static_cast<uint64_t>(ts.tv_nsec) / 1000000u);
}

}  // namespace

void posix_transport(modelota_http_transport* io, posix_conn* conn) {
    conn->fd = -1;
    conn->connects = 0;
    io->ctx = conn;
    io->connect = tcp_connect;
    io->write = tcp_write;
    io->read = tcp_read;
    io->close = tcp_close;
    io->now_ms = mono_ms;
}
