/* Ember's VM state file (docs/snapshot-format.md): a 32-byte header (magic,
 * format version, payload length, the payload's CRC-32 and the header's own)
 * and a JSON payload holding the VM's configuration, KVM's vCPU and VM
 * state and every device's state. Reading is bounded (SNAPSHOT_MAX_PAYLOAD)
 * and checks magic, version, length and both checksums before the payload
 * is parsed; the parser then only ever sees bytes the writer produced or
 * bytes forged with a valid checksum, and is fuzzed for the latter. */
#ifndef EMBER_SNAPSHOT_FILE_H
#define EMBER_SNAPSHOT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"

#define SNAPSHOT_MAGIC "EMBERVMS"
/* Bumped whenever a reader of the previous version could misread the file. */
#define SNAPSHOT_FORMAT_VERSION 1
/* What --snapshot-version prints (Firecracker prints its own as v<semver>). */
#define SNAPSHOT_VERSION_STRING "1.0.0"
#define SNAPSHOT_HEADER_SIZE 32
/* A state file of a 32-vCPU VM with 16 devices is well under 2 MiB. */
#define SNAPSHOT_MAX_PAYLOAD (16u << 20)

/* Writes state to path (created or truncated, mode 0600), fsynced. */
int snapshot_file_write(const char *path, json_t *state, ember_err *e);
/* Checks a whole file's bytes and parses its payload into *state (an
 * object); *version gets the format version found (also on a version
 * mismatch, for --describe-snapshot). */
int snapshot_file_parse(const uint8_t *buf, size_t len, json_t **state, uint32_t *version,
			ember_err *e);
/* Reads path without blocking on a FIFO and parses it. */
int snapshot_file_read(const char *path, json_t **state, uint32_t *version, ember_err *e);

#endif
