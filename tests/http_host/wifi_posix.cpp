/*
 * The WiFi shim's declarations (tests/arduino_shims/WiFi/src) implemented
 * on the host: WiFi is always connected, its MAC comes from the environment
 * (MODELOTA_HOST_MAC), and WiFiClient is a real TCP socket. Used to run
 * examples/WiFiPull on the host against real servers.
 */
#include <WiFi.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

WiFiClass WiFi;

wl_status_t WiFiClass::begin(const char*, const char*, int32_t, const uint8_t*, bool) {
    return WL_CONNECTED;
}
bool WiFiClass::disconnect(bool, bool) { return true; }
wl_status_t WiFiClass::status() { return WL_CONNECTED; }
uint8_t* WiFiClass::macAddress(uint8_t* mac) {
    memset(mac, 0, 6);
    return mac;
}
String WiFiClass::macAddress() {
    const char* mac = getenv("MODELOTA_HOST_MAC");
    return String(mac != NULL ? mac : "24:6F:28:00:00:01");
}

WiFiClient::WiFiClient() : fd_(-1) {}
WiFiClient::~WiFiClient() { stop(); }

int WiFiClient::connect(IPAddress ip, uint16_t port) {
    char host[16];
    snprintf(host, sizeof(host), "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
    return connect(host, port);
}

int WiFiClient::connect(const char* host, uint16_t port) {
    stop();
    char service[8];
    snprintf(service, sizeof(service), "%u", static_cast<unsigned>(port));
    addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0) {
        return 0;
    }
    for (addrinfo* a = res; a != NULL && fd_ < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            fd_ = fd;
        } else if (fd >= 0) {
            close(fd);
        }
    }
    freeaddrinfo(res);
    return fd_ >= 0 ? 1 : 0;
}

size_t WiFiClient::write(uint8_t data) { return write(&data, 1); }

size_t WiFiClient::write(const uint8_t* buf, size_t size) {
    if (fd_ < 0) {
        return 0;
    }
    ssize_t w = send(fd_, buf, size, MSG_NOSIGNAL);
    return w > 0 ? static_cast<size_t>(w) : 0;
}

int WiFiClient::available() {
    int n = 0;
    if (fd_ < 0 || ioctl(fd_, FIONREAD, &n) != 0) {
        return 0;
    }
    return n;
}

int WiFiClient::read() {
    uint8_t c = 0;
    return read(&c, 1) == 1 ? c : -1;
}

int WiFiClient::read(uint8_t* buf, size_t size) {
    if (fd_ < 0) {
        return -1;
    }
    ssize_t got = recv(fd_, buf, size, MSG_DONTWAIT);
    return got > 0 ? static_cast<int>(got) : -1;
}

int WiFiClient::peek() {
    uint8_t c = 0;
    return fd_ >= 0 && recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1 ? c : -1;
}

void WiFiClient::flush() {}

void WiFiClient::stop() {
    if (fd_ >= 0) {
        close(fd_);
        fd_ = -1;
    }
}

uint8_t WiFiClient::connected() {
    if (fd_ < 0) {
        return 0;
    }
    uint8_t c = 0;
    ssize_t r = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) {
        return 0; /* the peer closed and everything was read */
    }
    return (r > 0 || errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : 0;
}

WiFiClient::operator bool() { return connected() != 0; }
