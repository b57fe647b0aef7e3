/* Layout of dy_conntrack: a hash of maps from endpoint id to that endpoint's own LRU hash of
 * flows (TCP, UDP, ICMP and ICMPv6 of both families). A pod that opens many flows evicts only
 * its own entries. The agent creates each endpoint's table; its size may differ per endpoint. */
#ifndef DYAD_MAP_CONNTRACK_H
#define DYAD_MAP_CONNTRACK_H

#include <linux/types.h>

#define DY_CT_ENDPOINTS_MAX 65536 /* outer map: endpoints with a table */
#define DY_CT_ENDPOINT_ENTRIES 8192 /* inner prototype; the agent chooses each table's size */

/* A flow is stored once, in the direction it was first seen, tagged with the direction
 * (from the pod's view) in which policy admitted it. Replies match the reversed tuple. */
struct dy_ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport; /* ICMP echo: identifier as sport of the request */
	__be16 dport; /* ICMP echo: identifier as dport of the reply */
	__u8 proto;
	__u8 family;
	__u8 dir;     /* DY_DIR_* of the first packet */
	__u8 pad;
};

enum dy_ct_flags {
	DY_CT_F_SEEN_REPLY = 1 << 0,
	DY_CT_F_CLOSING = 1 << 1, /* TCP FIN or RST seen */
};

struct dy_ct_entry {
	__u64 expires_ns;  /* bpf_ktime_get_ns() deadline; past it the entry counts as gone */
	__u64 packets;
	__u64 bytes;
	__u32 src_identity;
	__u32 flags;       /* DY_CT_F_* */
};

#endif
