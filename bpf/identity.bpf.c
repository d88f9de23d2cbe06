/* Process identity: which service a process belongs to.
 * Hooks: syscalls:sys_enter_execve (any kernel with ftrace syscalls),
 *        sched:sched_process_exec (3.4+), sched:sched_process_fork,
 *        sched:sched_process_exit.
 * The environment is read from execve's own envp, before the new image runs:
 * servers such as redis-server rewrite their process title soon after start
 * and thereby wipe /proc/PID/environ, so reading it later is a race. */

/* tid -> OTEL_SERVICE_NAME seen at execve entry, consumed at exec. */
BPF_TABLE("lru_hash", u32, struct ident_name, exec_service_names, 1024);

#define OTEL_PREFIX_LEN 18  /* strlen("OTEL_SERVICE_NAME=") */

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

#ifdef HAVE_SYSCALLS_SYS_ENTER_EXECVE
TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
	return capture_service_name((const char *const *)args->envp);
}
#endif

#ifdef HAVE_SYSCALLS_SYS_ENTER_EXECVEAT
TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
	return capture_service_name((const char *const *)args->envp);
}
#endif

#ifdef HAVE_SCHED_SCHED_PROCESS_EXEC
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u32 old_tid = args->old_pid;
	struct ident_name *captured = exec_service_names.lookup(&old_tid);
	if (captured) {
		struct ident_name n = *captured;
		exec_service_names.delete(&old_tid);
		remember_identity(tgid, &n);
		return 0;
	}
	struct ident_name n = {.kind = IDENT_KIND_COMM};
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
