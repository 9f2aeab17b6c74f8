#include "util/host_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_name(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a named pipe (FIFO)";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISBLK(mode))
		return "a block device";
	return "of an unknown kind";
}

static int failed(ember_err *e, const char *what, const char *path, const char *reason)
{
	if (what)
		return err_set(e, "%s %s: %s", what, path, reason);
	return err_set(e, "%s: %s", path, reason);
}

int host_file_open(const char *path, int flags, unsigned kinds, const char *what, ember_err *e)
{
	char reason[160];
	/* O_NONBLOCK: a FIFO opens at once (or, write-only without a reader,
	 * fails with ENXIO), a device does not wait for its hardware.
	 * O_NOCTTY: a terminal named by mistake never becomes ours. */
	int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		failed(e, what, path, strerror(err));
		errno = err;
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		snprintf(reason, sizeof(reason), "fstat: %s", strerror(errno));
		close(fd);
		return failed(e, what, path, reason);
	}
	bool ok = (S_ISREG(st.st_mode) && (kinds & HOST_FILE_REGULAR)) ||
		  (S_ISBLK(st.st_mode) && (kinds & HOST_FILE_BLOCK_DEVICE));
	if (!ok) {
		close(fd);
		snprintf(reason, sizeof(reason), "is %s, %s", kind_name(st.st_mode),
			 kinds & HOST_FILE_BLOCK_DEVICE ? "neither a regular file nor a block device"
							: "not a regular file");
		failed(e, what, path, reason);
		errno = 0;
		return -1;
	}
	/* Reads and writes of the file are ordinary blocking I/O (the block
	 * engines rely on that): only the open had to be non-blocking. */
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		snprintf(reason, sizeof(reason), "fcntl: %s", strerror(errno));
		close(fd);
		return failed(e, what, path, reason);
	}
	return fd;
}
