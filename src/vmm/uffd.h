/* The Uffd memory backend of PUT /snapshot/load, as Firecracker's: guest
 * memory is anonymous and registered with a userfaultfd; the fd and the
 * regions' layout go to the page-fault handler listening on a Unix socket,
 * which then serves every first touch of a page (UFFDIO_COPY). The message
 * is Firecracker's: a JSON array of {base_host_virt_addr, size, offset,
 * page_size, page_size_kib} (page sizes in bytes, offsets into the
 * snapshot's memory file), with the uffd as SCM_RIGHTS. tools/uffd/ has a
 * handler. If the handler dies, a page it has not served blocks whoever
 * touches it (a vCPU, the VMM thread) for good, as in Firecracker. */
#ifndef EMBER_UFFD_H
#define EMBER_UFFD_H

#include "guest/guest_mem.h"
#include "util/err.h"

/* Returns the uffd (which the caller keeps open for the VM's life), or -1. */
int uffd_register_and_send(const struct guest_mem *gm, const char *uds_path, ember_err *e);

#endif
