/* Compile-only stand-in (see WiFi.h): no radio, nothing ever connects. */
#include "WiFi.h"

WiFiClass WiFi;

wl_status_t WiFiClass::begin(const char*, const char*, int32_t, const uint8_t*, bool) {
    return WL_CONNECT_FAILED;
}
bool WiFiClass::disconnect(bool, bool) { return true; }
wl_status_t WiFiClass::status() { return WL_DISCONNECTED; }
uint8_t* WiFiClass::macAddress(uint8_t* mac) {
    for (int i = 0; i < 6; ++i) {
        mac[i] = 0;
    }
    return mac;
}
String WiFiClass::macAddress() { return String("00:00:00:00:00:00"); }

WiFiClient::WiFiClient() : fd_(-1) {}
WiFiClient::~WiFiClient() {}
int WiFiClient::connect(IPAddress, uint16_t) { return 0; }
int WiFiClient::connect(const char*, uint16_t) { return 0; }
size_t WiFiClient::write(uint8_t) { return 0; }
size_t WiFiClient::write(const uint8_t*, size_t) { return 0; }
int WiFiClient::available() { return 0; }
int WiFiClient::read() { return -1; }
int WiFiClient::read(uint8_t*, size_t) { return -1; }
int WiFiClient::peek() { return -1; }
void WiFiClient::flush() {}
void WiFiClient::stop() {}
uint8_t WiFiClient::connected() { return 0; }
WiFiClient::operator bool() { return false; }
