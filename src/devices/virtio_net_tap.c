/* The TAP backend of virtio-net: opening a TAP by name the way Firecracker
 * does, and the offload flags that follow from the negotiated features. */
#include "devices/virtio_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Firecracker's words, which its clients and tests match. */
#define TAP_FAILED "Could not create the network device: Open tap device failed: "

int virtio_net_tap_open(const char *name, ember_err *e)
{
	struct ifreq ifr;
	size_t len = strlen(name);
	if (len == 0 || len >= sizeof(ifr.ifr_name))
		return err_set(e, TAP_FAILED "Invalid interface name (%s: 1 to %zu characters)",
			       name, sizeof(ifr.ifr_name) - 1);
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, TAP_FAILED "Couldn't open /dev/net/tun: %s (os error %d)",
			       strerror(errno), errno);
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, name, len);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		err_set(e, TAP_FAILED "Error while creating ifreq structure: %s (os error %d). "
			"Invalid TUN/TAP Backend provided by %s. Check our documentation on setting "
			"up the network devices.", strerror(errno), errno, name);
		close(fd);
		return -1;
	}
	int hdr = VIRTIO_NET_HDR_SIZE;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		err_set(e, TAP_FAILED "Error while setting size of the vnet header: %s (os error "
			"%d) (%s)", strerror(errno), errno, name);
		close(fd);
		return -1;
	}
	return fd;
}

uint32_t virtio_net_tap_offload_flags(uint64_t features)
{
	/* What the TAP may hand us is what the guest accepts: the GUEST_*
	 * features. The kernel takes TSO and UFO only together with CSUM
	 * (and the spec makes them depend on GUEST_CSUM), so a driver that
	 * negotiated them without it gets no offloads rather than a failed
	 * activation. */
	if (!(features & (1ULL << VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	uint32_t flags = TUN_F_CSUM;
	if (features & (1ULL << VIRTIO_NET_F_GUEST_TSO4))
		flags |= TUN_F_TSO4;
	if (features & (1ULL << VIRTIO_NET_F_GUEST_TSO6))
		flags |= TUN_F_TSO6;
	if (features & (1ULL << VIRTIO_NET_F_GUEST_UFO))
		flags |= TUN_F_UFO;
	return flags;
}

int virtio_net_tap_set_offload(int fd, uint32_t flags, ember_err *e)
{
	if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0)
		return err_set(e, "cannot set the TAP offload flags 0x%x: %s", flags,
			       strerror(errno));
	return 0;
}
