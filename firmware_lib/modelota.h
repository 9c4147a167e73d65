/* ModelOTA portable core: one include for ports and host builds. */
#ifndef MODELOTA_H
#define MODELOTA_H
#include "modelota/version.h"
#include "modelota/config.h"
#include "modelota/status.h"
#include "modelota/crc32.h"
#include "modelota/format.h"
#include "modelota/decode.h"
#include "modelota/updater.h"
#include "modelota/storage.h"
#include "modelota/store.h"
#include "modelota/link.h"
#endif
