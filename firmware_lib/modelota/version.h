/* ModelOTA library version: the same as library.properties, library.json and
 * the modelota Python package (tests/test_metadata.py checks that they agree). */
#ifndef MODELOTA_VERSION_H
#define MODELOTA_VERSION_H

#define MODELOTA_VERSION_MAJOR 0
#define MODELOTA_VERSION_MINOR 2
#define MODELOTA_VERSION_PATCH 0
#define MODELOTA_VERSION_STRING "0.2.0"

#endif
