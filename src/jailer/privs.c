#include "jailer/privs.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int privs_drop(uid_t uid, gid_t gid, ember_err *e)
{
	/* The bounding set caps what any later exec can gain; dropping needs
	 * CAP_SETPCAP, so before the uid changes. EINVAL past the kernel's last
	 * capability ends the loop. */
	for (int cap = 0; cap < 64; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
			continue;
		if (errno == EINVAL)
			break;
		return err_set(e, "drop capability %d from the bounding set: %s", cap,
			       strerror(errno));
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return err_set(e, "clear the ambient capabilities: %s", strerror(errno));
	if (setgroups(0, NULL))
		return err_set(e, "drop supplementary groups: %s", strerror(errno));
	if (setresgid(gid, gid, gid))
		return err_set(e, "set gid %u: %s", (unsigned)gid, strerror(errno));
	if (setresuid(uid, uid, uid))
		return err_set(e, "set uid %u: %s", (unsigned)uid, strerror(errno));
	/* A non-zero uid has lost them already; uid 0 keeps them until now. */
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data))
		return err_set(e, "clear the capabilities: %s", strerror(errno));
	return 0;
}
