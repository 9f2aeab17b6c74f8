/* A page-fault handler for Ember's (and Firecracker's) Uffd memory backend
 * (docs/snapshot-format.md): listens on a Unix socket, takes one VMM's
 * handshake (a JSON array of regions and the userfaultfd as SCM_RIGHTS)
 * and serves each page the guest or the VMM first touches from the
 * snapshot's memory file (UFFDIO_COPY), until the VMM goes away. Each
 * fault is served with a whole page of its region's page_size: 4 KiB, or
 * 2 MiB for guest memory on hugetlbfs (huge_pages "2M"), where the kernel
 * takes nothing smaller.
 *
 *	uffd-handler SOCKET MEMORY_FILE
 *
 * Prints "uffd-handler: listening" once the socket accepts, a line per
 * region of the handshake (its size and page size), and at the end how
 * many pages it served. For tests and as a starting point: it serves
 * one VMM, one page per fault, and treats the memory file as trusted. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#define MAX_REGIONS 8

struct region {
	uint64_t base, size, offset, page_size;
};

static int die(const char *what)
{
	fprintf(stderr, "uffd-handler: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "uffd-handler: socket path too long\n");
		exit(1);
	}
	strcpy(sa.sun_path, path);
	unlink(path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 1))
		die(path);
	return s;
}

/* The handshake: the message and the uffd. */
static int receive(int conn, struct region *r, int *nr)
{
	char buf[4096];
	union {
		char c[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.c,
			    .msg_controllen = sizeof(ctl.c)};
	ssize_t n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		die("recvmsg");
	buf[n] = 0;
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_type != SCM_RIGHTS) {
		fprintf(stderr, "uffd-handler: no fd in the handshake\n");
		exit(1);
	}
	int uffd;
	memcpy(&uffd, CMSG_DATA(c), sizeof(int));
	json_error_t je;
	json_t *arr = json_loads(buf, 0, &je);
	size_t i;
	json_t *o;
	*nr = 0;
	if (!json_is_array(arr) || json_array_size(arr) > MAX_REGIONS) {
		fprintf(stderr, "uffd-handler: bad handshake: %s\n", buf);
		exit(1);
	}
	json_array_foreach(arr, i, o) {
		r[i].base = (uint64_t)json_integer_value(json_object_get(o, "base_host_virt_addr"));
		r[i].size = (uint64_t)json_integer_value(json_object_get(o, "size"));
		r[i].offset = (uint64_t)json_integer_value(json_object_get(o, "offset"));
		/* A handshake without it (an older VMM) means base pages. */
		json_t *ps = json_object_get(o, "page_size");
		r[i].page_size = ps ? (uint64_t)json_integer_value(ps) : 4096;
		uint64_t p = r[i].page_size;
		if (p < 4096 || p > (1ULL << 30) || (p & (p - 1)) || r[i].base % p ||
		    r[i].size % p) {
			fprintf(stderr, "uffd-handler: region %zu: bad page size %llu\n", i,
				(unsigned long long)p);
			exit(1);
		}
		(*nr)++;
	}
	json_decref(arr);
	return uffd;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: uffd-handler SOCKET MEMORY_FILE\n");
		return 2;
	}
	int mfd = open(argv[2], O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (mfd < 0 || fstat(mfd, &st))
		die(argv[2]);
	const uint8_t *mem = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, mfd, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	int s = listen_on(argv[1]);
	printf("uffd-handler: listening\n");
	fflush(stdout);
	int conn = accept4(s, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		die("accept");
	struct region r[MAX_REGIONS];
	int nr;
	int uffd = receive(conn, r, &nr);
	close(conn);
	for (int k = 0; k < nr; k++)
		printf("uffd-handler: region %d: %llu bytes in %llu-byte pages\n", k,
		       (unsigned long long)r[k].size, (unsigned long long)r[k].page_size);
	fflush(stdout);
	uint64_t served = 0;
	for (;;) {
		struct pollfd p = {.fd = uffd, .events = POLLIN};
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p.revents & (POLLERR | POLLHUP))
			break;
		struct uffd_msg msg;
		ssize_t n = read(uffd, &msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n != sizeof(msg))
			break; /* the VMM is gone */
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue; /* UFFD_EVENT_REMOVE: the page is zero next time */
		uint64_t addr = msg.arg.pagefault.address;
		int k;
		for (k = 0; k < nr; k++)
			if (addr >= r[k].base && addr - r[k].base < r[k].size)
				break;
		if (k == nr) {
			fprintf(stderr, "uffd-handler: fault at 0x%llx outside guest memory\n",
				(unsigned long long)addr);
			return 1;
		}
		uint64_t page = r[k].page_size;
		addr &= ~(page - 1);
		uint64_t off = r[k].offset + (addr - r[k].base);
		if (off + page > (uint64_t)st.st_size) {
			fprintf(stderr, "uffd-handler: the memory file is too short\n");
			return 1;
		}
		struct uffdio_copy copy = {.dst = addr, .src = (uint64_t)(uintptr_t)(mem + off),
					   .len = page};
		if (ioctl(uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST) {
			if (errno == ESRCH || errno == ENOENT)
				break; /* the VMM exited */
			die("UFFDIO_COPY");
		}
		served++;
	}
	printf("uffd-handler: served %llu pages\n", (unsigned long long)served);
	return 0;
}
