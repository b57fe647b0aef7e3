/* Layout of dy_config: a single-slot array the agent writes; zero fields mean defaults. */
#ifndef DYAD_MAP_CONFIG_H
#define DYAD_MAP_CONFIG_H

#include <linux/types.h>

enum dy_config_flags {
	DY_CFG_F_TRACE = 1 << 0, /* emit a trace event for every new allowed flow */
};

struct dy_config {
	__u32 flags;          /* DY_CFG_F_* */
	__u32 ct_tcp_s;       /* idle timeout of an established TCP flow */
	__u32 ct_tcp_close_s; /* after FIN/RST, and before the first reply */
	__u32 ct_udp_s;
	__u32 ct_icmp_s;
	__u32 pad;
};

#endif
