/*
 * Compile-only stand-in for the ESP32 Arduino core's WiFiClient.h: an
 * Arduino Client (the core's Client.h) with the ESP32 class's name. See
 * WiFi.h.
 */
#ifndef MODELOTA_WIFICLIENT_SHIM_H
#define MODELOTA_WIFICLIENT_SHIM_H

#include <Arduino.h>
#include <Client.h>

class WiFiClient : public Client {
public:
    WiFiClient();
    ~WiFiClient();
    int connect(IPAddress ip, uint16_t port);
    int connect(const char* host, uint16_t port);
    size_t write(uint8_t data);
    size_t write(const uint8_t* buf, size_t size);
    int available();
    int read();
    int read(uint8_t* buf, size_t size);
    int peek();
    void flush();
    void stop();
    uint8_t connected();
    operator bool();

private:
    WiFiClient(const WiFiClient&);
    WiFiClient& operator=(const WiFiClient&);
    int fd_; /* the host build's socket; -1 when closed */
};

#endif
