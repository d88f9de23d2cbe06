/* What every part of taskscope's kernel side needs: BCC's context types and
 * the few protocol constants the generic headers would otherwise pull in. */
#ifndef TASKSCOPE_COMMON_H
#define TASKSCOPE_COMMON_H

#include <uapi/linux/ptrace.h>

#define IPPROTO_TCP_ 6
#define AF_INET_ 2
#define AF_INET6_ 10

#endif
