#include "jailer/undo.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int undo_push(struct undo_log *u, enum undo_kind kind, const char *path)
{
	if (u->n >= UNDO_MAX || strlen(path) >= PATH_MAX)
		return -1;
	u->steps[u->n].kind = kind;
	strcpy(u->steps[u->n].path, path);
	u->n++;
	return 0;
}

static void write_pid(const char *path)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) < 0) {
		/* best effort: the rmdir that follows then fails, also silently */
	}
	close(fd);
}

void undo_run(struct undo_log *u)
{
	while (u->n > 0) {
		struct undo_step *s = &u->steps[--u->n];
		switch (s->kind) {
		case UNDO_UNLINK: unlink(s->path); break;
		case UNDO_RMDIR: rmdir(s->path); break;
		case UNDO_WRITE_PID: write_pid(s->path); break;
		}
	}
}

void undo_forget(struct undo_log *u)
{
	u->n = 0;
}
