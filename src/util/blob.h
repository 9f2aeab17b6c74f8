/* Binary blobs inside JSON: a byte array as a lowercase hex string, read
 * back only at exactly the expected length; and CRC-32 (IEEE 802.3, the
 * zlib polynomial) for checksumming whole files. */
#ifndef EMBER_BLOB_H
#define EMBER_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"

/* CRC-32 as in IEEE 802.3 and zlib (check value 0xcbf43926), continuing from crc. */
uint32_t crc32_ieee(uint32_t crc, const void *data, size_t len);

/* A new JSON string holding len bytes as hex (NULL: out of memory). */
json_t *blob_json(const void *data, size_t len);
/* Decodes obj[key] into out: -1 and e set ("<key>: ...") unless it is a hex
 * string of exactly len bytes. */
int blob_get(json_t *obj, const char *key, void *out, size_t len, ember_err *e);
/* The same for a string of any length up to max bytes: *len gets it. */
int blob_get_var(json_t *obj, const char *key, void *out, size_t max, size_t *len, ember_err *e);
/* obj[key] as an unsigned integer no larger than max. */
int json_get_u64(json_t *obj, const char *key, uint64_t max, uint64_t *out, ember_err *e);

#endif
