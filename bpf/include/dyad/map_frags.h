/* Layout of dy_frags: LRU hash from a fragmented datagram to the L4 identifiers its first
 * fragment carried, so non-first fragments (no L4 header) are judged with the flow's ports. */
#ifndef DYAD_MAP_FRAGS_H
#define DYAD_MAP_FRAGS_H

#include <linux/types.h>

#define DY_FRAGS_MAX 16384

struct dy_frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;     /* IPv4 identification (16 bits, network order) or IPv6 fragment id */
	__u8 proto;   /* IPv4 protocol, or the IPv6 fragment header's next header */
	__u8 family;  /* DY_FAMILY_* */
	__u8 pad[2];
};

struct dy_frag_info {
	__be16 sport;    /* as in the conntrack tuple (ICMP echo: identifier) */
	__be16 dport;
	__u8 proto;      /* upper-layer protocol the first fragment carried */
	__u8 icmp_type;
	__u8 pad[2];
};

#endif
