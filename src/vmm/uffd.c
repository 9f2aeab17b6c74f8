#include "vmm/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

/* The syscall, or /dev/userfaultfd where the syscall is refused to users
 * without CAP_SYS_PTRACE (vm.unprivileged_userfaultfd = 0). */
static int uffd_open(ember_err *e)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	int err = errno;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		err = errno;
		close(dev);
		if (fd >= 0)
			return fd;
	}
	return err_set(e, "Error creating guest memory from uffd: userfaultfd: %s",
		       strerror(err));
}

static int send_handshake(const char *path, const char *msg, int uffd, ember_err *e)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return err_set(e, "backend_path %s: too long for a Unix socket", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return err_set(e, "socket: %s", strerror(errno));
	/* A listening handler accepts at once (the connection completes in
	 * the kernel's backlog); a path nobody listens on fails at once. */
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;
		close(s);
		return err_set(e, "cannot connect to the page-fault handler at %s: %s", path,
			       strerror(err));
	}
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	ssize_t n = sendmsg(s, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	int err = errno;
	close(s);
	if (n != (ssize_t)iov.iov_len)
		return err_set(e, "cannot send to the page-fault handler at %s: %s", path,
			       n < 0 ? strerror(err) : "short write");
	return 0;
}

int uffd_register_and_send(const struct guest_mem *gm, const char *uds_path, ember_err *e)
{
	int fd = uffd_open(e);
	if (fd < 0)
		return -1;
	struct uffdio_api api = {.api = UFFD_API};
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		err_set(e, "Error creating guest memory from uffd: UFFDIO_API: %s", strerror(errno));
		goto fail;
	}
	/* Firecracker's handshake gives each region's page size in bytes
	 * (page_size_kib too, despite its name): the handler must fill whole
	 * pages, 2 MiB ones for hugetlbfs memory. */
	json_int_t page = gm->discard_unit ? (json_int_t)gm->discard_unit : 4096;
	json_t *regions = json_array();
	uint64_t offset = 0;
	for (int i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->region[i];
		struct uffdio_register reg = {
			.range = {.start = (uint64_t)(uintptr_t)r->host, .len = r->size},
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
			json_decref(regions);
			err_set(e, "Error creating guest memory from uffd: UFFDIO_REGISTER: %s",
				strerror(errno));
			goto fail;
		}
		json_array_append_new(regions, json_pack("{s:I, s:I, s:I, s:I, s:I}",
			"base_host_virt_addr", (json_int_t)(uintptr_t)r->host, "size",
			(json_int_t)r->size, "offset", (json_int_t)offset, "page_size", page,
			"page_size_kib", page));
		offset += r->size;
	}
	char *msg = json_dumps(regions, JSON_COMPACT);
	json_decref(regions);
	int rc = msg ? send_handshake(uds_path, msg, fd, e) : err_set(e, "out of memory");
	free(msg);
	if (rc)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}
