/* Layout of dy_ipcache: LPM trie, address prefix (either family) -> identity and hosting node. */
#ifndef DYAD_MAP_IPCACHE_H
#define DYAD_MAP_IPCACHE_H

#include <linux/types.h>

#define DY_IPCACHE_MAX 512000

/* prefixlen counts the family byte and padding too: an IP prefix of length p is stored with
 * prefixlen = DY_IPCACHE_PREFIX_BASE + p, so v4 and v6 prefixes never match each other. */
enum dy_ipcache_prefix {
	DY_IPCACHE_PREFIX_BASE = 32,
};

struct dy_ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16]; /* network order */
};

enum dy_ipcache_flags {
	DY_IPCACHE_F_LOCAL_NODE = 1 << 0, /* prefix lives on this node */
};

struct dy_ipcache_info {
	__u32 identity;
	__u32 node_id;
	__u8 node_family;  /* 0 when no node (e.g. world), else DY_FAMILY_* */
	__u8 flags;        /* DY_IPCACHE_F_* */
	__u8 pad[2];
	__u8 node_addr[16]; /* address of the hosting node, network order */
};

#endif
