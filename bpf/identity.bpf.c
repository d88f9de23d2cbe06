/* Process identity: which service a process belongs to.
 * Hooks: sched:sched_process_exec (3.4+), sched:sched_process_fork; and,
 * only where the kernel has no BTF, syscalls:sys_enter_execve{,at}.
 * OTEL_SERVICE_NAME is read when the new image is set up: servers such as
 * redis-server rewrite their process title soon after start and thereby wipe
 * /proc/PID/environ, so reading it later is a race.  With BTF the new
 * process's environment block (mm->env_start..env_end) is scanned at
 * sched_process_exec.  The fallback reads execve's envp instead; it costs
 * more than it seems, because any syscall tracepoint sends every syscall of
 * every task through the kernel's slow tracing path. */

#include "identity.h"

#define OTEL_PREFIX_LEN 18  /* strlen("OTEL_SERVICE_NAME=") */
#define ENV_CHUNK 256

static __always_inline int is_otel_prefix(const char *s)
{
	/* "OTEL_SER" "VICE_NAM" "E=" as little-endian words. */
	u64 w0, w1;
	u16 w2;
	__builtin_memcpy(&w0, s, 8);
	__builtin_memcpy(&w1, s + 8, 8);
	__builtin_memcpy(&w2, s + 16, 2);
	return w0 == 0x5245535f4c45544fULL && w1 == 0x4d414e5f45434956ULL &&
	       w2 == 0x3d45;
}

#if defined(IDENTITY_BTF)
struct env_chunk {
	char bytes[ENV_CHUNK];
};
BPF_PERCPU_ARRAY(env_chunks, struct env_chunk, 1);

/* Scan the NUL-separated environment block for OTEL_SERVICE_NAME, one
 * string (or 255-byte piece of a longer one) per step. */
static __always_inline int scan_environment(struct ident_name *n, char *chunk)
{
	void *task = (void *)bpf_get_current_task(), *mm = 0;
	unsigned long pos = 0, end = 0;
	bpf_probe_read_kernel(&mm, sizeof(mm), task + TASK_MM_OFFSET);
	if (!mm)
		return 0;
	bpf_probe_read_kernel(&pos, sizeof(pos), mm + MM_ENV_START_OFFSET);
	bpf_probe_read_kernel(&end, sizeof(end), mm + MM_ENV_END_OFFSET);
	for (int i = 0; i < MAX_ENV_SCAN && pos < end; i++) {
		long len = bpf_probe_read_user_str(chunk, ENV_CHUNK, (void *)pos);
		if (len <= 0)
			return 0;
		if (len > OTEL_PREFIX_LEN && is_otel_prefix(chunk))
			return bpf_probe_read_user_str(n->name, sizeof(n->name),
						       (void *)pos + OTEL_PREFIX_LEN) > 1;
		/* A full chunk holds no NUL: go on inside the same string. */
		pos += len == ENV_CHUNK ? ENV_CHUNK - 1 : len;
	}
	return 0;
}

/* The environment holds secrets (tokens, passwords): the chunk buffer it
 * passed through is cleared after the scan. */
static __always_inline int environment_service_name(struct ident_name *n)
{
	u32 zero = 0;
	struct env_chunk *buf = env_chunks.lookup(&zero);
	if (!buf)
		return 0;
	int found = scan_environment(n, buf->bytes);
	__builtin_memset(buf->bytes, 0, sizeof(buf->bytes));
	return found;
}

#elif defined(HAVE_SYSCALLS_SYS_ENTER_EXECVE)
/* tid -> OTEL_SERVICE_NAME seen at execve entry, consumed at exec. */
BPF_TABLE("lru_hash", u32, struct ident_name, exec_service_names, 1024);

static __always_inline int capture_service_name(const char *const *envp)
{
	char prefix[OTEL_PREFIX_LEN + 1];
	const char *var;
	for (int i = 0; i < MAX_ENV_SCAN; i++) {
		if (bpf_probe_read_user(&var, sizeof(var), &envp[i]) || !var)
			return 0;
		if (bpf_probe_read_user(prefix, OTEL_PREFIX_LEN, var))
			continue;
		if (!is_otel_prefix(prefix))
			continue;
		struct ident_name n = {.kind = IDENT_KIND_OTEL};
		if (bpf_probe_read_user_str(n.name, sizeof(n.name), var + OTEL_PREFIX_LEN) <= 1)
			return 0;
		u32 tid = bpf_get_current_pid_tgid();
		exec_service_names.update(&tid, &n);
		return 0;
	}
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
	return capture_service_name((const char *const *)args->envp);
}

#ifdef HAVE_SYSCALLS_SYS_ENTER_EXECVEAT
TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
	return capture_service_name((const char *const *)args->envp);
}
#endif

static __always_inline int environment_service_name(struct ident_name *n, u32 old_tid)
{
	struct ident_name *captured = exec_service_names.lookup(&old_tid);
	if (!captured)
		return 0;
	*n = *captured;
	exec_service_names.delete(&old_tid);
	return 1;
}
#endif

#ifdef HAVE_SCHED_SCHED_PROCESS_EXEC
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ident_name n = {.kind = IDENT_KIND_OTEL};
#if defined(IDENTITY_BTF)
	if (environment_service_name(&n)) {
#elif defined(HAVE_SYSCALLS_SYS_ENTER_EXECVE)
	if (environment_service_name(&n, args->old_pid)) {
#else
	if (0) {
#endif
		remember_identity(tgid, &n);
		return 0;
	}
	__builtin_memset(&n, 0, sizeof(n));
	n.kind = IDENT_KIND_COMM;
	bpf_get_current_comm(&n.name, sizeof(n.name));
	remember_identity(tgid, &n);
	return 0;
}
#endif

/* A forked child inherits its parent's environment, so its identity too.
 * The tracepoint cannot tell a new thread from a new process; a thread's
 * slot is never read unless its id comes back as a process, which forks
 * first and so overwrites it. */
#ifdef HAVE_SCHED_SCHED_PROCESS_FORK
TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u32 parent_tgid = bpf_get_current_pid_tgid() >> 32, child = args->child_pid;
	current_ident();  /* make sure the parent is known */
	struct process *parent = processes.lookup(&parent_tgid);
	struct process *p = processes.lookup(&child);
	if (parent && p)
		*p = *parent;
	return 0;
}
#endif
