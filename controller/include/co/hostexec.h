/* Runs a command on the host from the node agent's pod (hostPID): enters the mount, UTS, IPC
 * and network namespaces of PID 1 and executes argv there, so that `systemctl` is the host's
 * and talks to the host's systemd. This replaces `nsenter -t 1 -m -u -i -n --`, which the
 * shell-less image does not contain. Needs CAP_SYS_ADMIN (and ptrace access to PID 1). */
#ifndef CO_HOSTEXEC_H
#define CO_HOSTEXEC_H

/* argv (borrowed, NULL-terminated; argv[0] looked up in the host's standard PATH). Returns
 * only on failure, after a message on stderr: 126 when a namespace cannot be entered, 127 when
 * the command cannot be executed, 2 without a command. Call it in a fresh single-threaded
 * process (setns of a mount namespace refuses multi-threaded callers). */
int co_host_exec(char *const argv[]);

#endif
