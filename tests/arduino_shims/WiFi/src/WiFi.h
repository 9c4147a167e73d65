/*
 * Compile-only stand-in for the ESP32 Arduino core's WiFi.h.
 *
 * Declares the part of the ESP32 WiFi API examples/WiFiPull uses, with the
 * ESP32 core's names, values and signatures (WiFiType.h's wl_status_t,
 * WiFiSTAClass::begin/status/macAddress). tests/test_arduino_examples.py
 * builds the sketch with the real AVR toolchain against it (WiFi.cpp: no
 * radio, nothing connects); tests/test_http_pull.py builds it with host g++
 * and tests/http_host/wifi_posix.cpp, whose WiFiClient is a real TCP socket.
 */
#ifndef MODELOTA_WIFI_SHIM_H
#define MODELOTA_WIFI_SHIM_H

#include <Arduino.h>

#include "WiFiClient.h"

typedef enum {
    WL_NO_SHIELD = 255,
    WL_IDLE_STATUS = 0,
    WL_NO_SSID_AVAIL = 1,
    WL_SCAN_COMPLETED = 2,
    WL_CONNECTED = 3,
    WL_CONNECT_FAILED = 4,
    WL_CONNECTION_LOST = 5,
    WL_DISCONNECTED = 6
} wl_status_t;

class WiFiClass {
public:
    wl_status_t begin(const char* ssid, const char* passphrase = NULL, int32_t channel = 0,
                      const uint8_t* bssid = NULL, bool connect = true);
    bool disconnect(bool wifioff = false, bool eraseap = false);
    static wl_status_t status();
    uint8_t* macAddress(uint8_t* mac);
    String macAddress();
};

extern WiFiClass WiFi;

#endif
