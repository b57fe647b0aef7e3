/* Layout of records in the dy_events ring buffer: drop and trace events. */
#ifndef DYAD_MAP_EVENTS_H
#define DYAD_MAP_EVENTS_H

#include <linux/types.h>

#define DY_EVENTS_BYTES (256 * 1024)

struct dy_event {
	__u64 ts_ns;
	__u32 ifindex;
	__u32 src_identity;
	__u32 dst_identity;
	__be16 sport;
	__be16 dport;
	__u8 type;   /* DY_EVENT_* */
	__u8 reason; /* DY_REASON_* */
	__u8 family; /* DY_FAMILY_* */
	__u8 proto;
	__u8 dir;    /* DY_DIR_* */
	__u8 tcp_flags; /* the TCP header's flags byte (CWR..FIN), 0 for other protocols */
	__u8 flags;     /* DY_EVENT_F_* */
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
};

#endif
