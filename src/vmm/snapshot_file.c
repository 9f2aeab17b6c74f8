#include "vmm/snapshot_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/blob.h"
#include "util/host_file.h"

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int snapshot_file_write(const char *path, json_t *state, ember_err *e)
{
	char *body = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
	if (!body)
		return err_set(e, "cannot serialise the VM state");
	size_t len = strlen(body);
	if (len > SNAPSHOT_MAX_PAYLOAD) {
		free(body);
		return err_set(e, "VM state of %zu bytes is over the format's limit of %u", len,
			       SNAPSHOT_MAX_PAYLOAD);
	}
	uint8_t h[SNAPSHOT_HEADER_SIZE];
	memcpy(h, SNAPSHOT_MAGIC, 8);
	put32(h + 8, SNAPSHOT_FORMAT_VERSION);
	put32(h + 12, SNAPSHOT_HEADER_SIZE);
	put64(h + 16, len);
	put32(h + 24, crc32_ieee(0, body, len));
	put32(h + 28, crc32_ieee(0, h, 28));
	/* A temporary file renamed over path once complete: a reader never
	 * sees half a state file, and a failed write leaves the old one. */
	char tmp[4200];
	int rc = 0;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp)) {
		free(body);
		return err_set(e, "snapshot file %s: path too long", path);
	}
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = err_set(e, "Cannot perform open on the snapshot backing file %s: %s", path,
			     strerror(errno));
	} else {
		if (write_all(fd, h, sizeof(h)) || write_all(fd, body, len) || fsync(fd))
			rc = err_set(e, "Cannot perform write on the snapshot backing file %s: %s",
				     path, strerror(errno));
		close(fd);
		if (!rc && rename(tmp, path))
			rc = err_set(e, "Cannot perform rename on the snapshot backing file %s: %s",
				     path, strerror(errno));
		if (rc)
			unlink(tmp);
	}
	free(body);
	return rc;
}

int snapshot_file_parse(const uint8_t *buf, size_t len, json_t **state, uint32_t *version,
			ember_err *e)
{
	*state = NULL;
	if (version)
		*version = 0;
	if (len < SNAPSHOT_HEADER_SIZE)
		return err_set(e, "truncated: %zu bytes, shorter than the %d-byte header", len,
			       SNAPSHOT_HEADER_SIZE);
	if (memcmp(buf, SNAPSHOT_MAGIC, 8))
		return err_set(e, "not an Ember VM state file (bad magic)");
	if (crc32_ieee(0, buf, 28) != get32(buf + 28))
		return err_set(e, "corrupted header (checksum mismatch)");
	uint32_t v = get32(buf + 8);
	if (version)
		*version = v;
	if (v != SNAPSHOT_FORMAT_VERSION)
		return err_set(e, "unsupported snapshot format version %u (this Ember reads "
			       "version %u)", v, SNAPSHOT_FORMAT_VERSION);
	if (get32(buf + 12) != SNAPSHOT_HEADER_SIZE)
		return err_set(e, "corrupted header (header size %u)", get32(buf + 12));
	uint64_t n = get64(buf + 16);
	if (n > SNAPSHOT_MAX_PAYLOAD)
		return err_set(e, "payload of %llu bytes is over the limit of %u",
			       (unsigned long long)n, SNAPSHOT_MAX_PAYLOAD);
	if (n != len - SNAPSHOT_HEADER_SIZE)
		return err_set(e, "%s: the header says %llu bytes of state, the file has %zu",
			       n > len - SNAPSHOT_HEADER_SIZE ? "truncated" : "trailing bytes",
			       (unsigned long long)n, len - SNAPSHOT_HEADER_SIZE);
	const uint8_t *body = buf + SNAPSHOT_HEADER_SIZE;
	if (crc32_ieee(0, body, n) != get32(buf + 24))
		return err_set(e, "corrupted state (checksum mismatch)");
	json_error_t je;
	json_t *j = json_loadb((const char *)body, n, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return err_set(e, "bad state payload: %s", je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return err_set(e, "bad state payload: not an object");
	}
	*state = j;
	return 0;
}

int snapshot_file_read(const char *path, json_t **state, uint32_t *version, ember_err *e)
{
	*state = NULL;
	int fd = host_file_open(path, O_RDONLY, HOST_FILE_REGULAR, "snapshot file", e);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st)) {
		close(fd);
		return err_set(e, "snapshot file %s: %s", path, strerror(errno));
	}
	if ((uint64_t)st.st_size > SNAPSHOT_HEADER_SIZE + (uint64_t)SNAPSHOT_MAX_PAYLOAD) {
		close(fd);
		return err_set(e, "snapshot file %s: %lld bytes, over the limit", path,
			       (long long)st.st_size);
	}
	size_t len = (size_t)st.st_size;
	uint8_t *buf = malloc(len ? len : 1);
	size_t got = 0;
	while (buf && got < len) {
		ssize_t r = pread(fd, buf + got, len - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (!buf)
		return err_set(e, "out of memory");
	int rc = snapshot_file_parse(buf, got, state, version, e);
	free(buf);
	if (rc)
		return err_prefix(e, "snapshot file %s", path);
	return 0;
}
