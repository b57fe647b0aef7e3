/* Layout of dy_policy: LPM trie over (endpoint, peer identity, direction, protocol, port).
 * Exact fields come first and the port last, so a port range is stored as the few port
 * prefixes that cover it. Wildcards: proto 0 with prefix ending before proto (any protocol),
 * port prefix 0 (any port); identity DY_IDENTITY_ANY is looked up as a second key. The identity
 * may also be a CIDR class (map_policy_cidr.h): what the peer's address block allows. Every entry
 * allows: NetworkPolicy only adds, so there is no deny entry. */
#ifndef DYAD_MAP_POLICY_H
#define DYAD_MAP_POLICY_H

#include <linux/types.h>

#define DY_POLICY_MAX 65536

/* Bits before the port: endpoint_id 32 + identity 32 + dir 8 + proto 8. */
enum dy_policy_prefix {
	DY_POLICY_PREFIX_PROTO = 72, /* covers endpoint, identity, dir; proto wildcard */
	DY_POLICY_PREFIX_PORT = 80,  /* + proto; add port prefix length 0..16 */
};

struct dy_policy_key {
	__u32 prefixlen;
	__u32 endpoint_id;
	__u32 identity; /* peer identity, DY_IDENTITY_ANY, or a CIDR class id */
	__u8 dir;     /* DY_DIR_* */
	__u8 proto;   /* IPPROTO_*; ICMP/ICMPv6 use the message type as port */
	__be16 dport; /* network order so prefixes cover port ranges */
};

enum dy_policy_action {
	DY_POLICY_ALLOW = 1,
	/* 2 was DY_POLICY_DENY (explicit deny entries); reserved, never reuse */
};

struct dy_policy_value {
	__u32 action;  /* DY_POLICY_* */
	__u32 rule_id; /* opaque to the datapath, echoed nowhere; for the agent's bookkeeping */
};

#endif
