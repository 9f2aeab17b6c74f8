/* Opening a file the user named (a kernel, an initrd, a drive's backing
 * file) on the VMM thread without ever blocking it.
 *
 * A plain open() of a FIFO waits for the other end, and a device node may
 * wait for its hardware; on the VMM thread that stops the API and SIGTERM.
 * host_file_open opens with O_NONBLOCK (a FIFO or device then opens at once
 * or fails), checks with fstat what it got, refuses anything that is not one
 * of the kinds the caller accepts, naming the path, and hands back a
 * blocking descriptor to a regular file or block device. */
#ifndef EMBER_HOST_FILE_H
#define EMBER_HOST_FILE_H

#include "util/err.h"

enum {
	HOST_FILE_REGULAR = 1 << 0,
	HOST_FILE_BLOCK_DEVICE = 1 << 1,
};

/* Opens path with flags (O_RDONLY or O_RDWR, O_CLOEXEC is added) if it is
 * one of `kinds`. Returns the descriptor, or -1 with e set to
 * "<what> <path>: <reason>" (what may be NULL: "<path>: <reason>") and errno
 * the open's error, or 0 if the file opened but is not of those kinds. */
int host_file_open(const char *path, int flags, unsigned kinds, const char *what, ember_err *e);

#endif
