/* What the jailer has built so far, to take down again if a later step fails:
 * the jail's files and directories, the cgroups it made. Nothing is left
 * half-built behind an error. Steps are undone newest first. */
#ifndef EMBER_JAILER_UNDO_H
#define EMBER_JAILER_UNDO_H

#include <limits.h>
#include <stddef.h>

#define UNDO_MAX 32

enum undo_kind {
	UNDO_UNLINK,    /* a file or device node we created */
	UNDO_RMDIR,     /* a directory we created */
	UNDO_WRITE_PID, /* move back out of a cgroup: write our pid to this file */
};

struct undo_step {
	enum undo_kind kind;
	char path[PATH_MAX];
};

struct undo_log {
	struct undo_step steps[UNDO_MAX];
	size_t n;
};

/* Records a step. The log is sized for every step the jailer makes; past
 * that, -1 (a bug, reported as such by the caller). */
int undo_push(struct undo_log *u, enum undo_kind kind, const char *path);

/* Undoes every recorded step, newest first, best effort, and empties the log. */
void undo_run(struct undo_log *u);

/* Forgets the steps: what was built stays (the jail is complete). */
void undo_forget(struct undo_log *u);

#endif
