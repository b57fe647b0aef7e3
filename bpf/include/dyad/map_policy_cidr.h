/* Layout of dy_policy_cidr: LPM trie over (endpoint, direction, family, peer address) -> class.
 *
 * NetworkPolicy ipBlocks match the peer's address as on the wire, whoever it is (pod addresses
 * included). The agent resolves every endpoint's blocks and excepts into longest-prefix entries;
 * each entry names a class: a distinct allow-set of that endpoint and direction. The class's
 * protocols and ports live in dy_policy with the class id as the identity, so one LPM lookup
 * here plus one policy lookup decide. An except is an entry whose class allows nothing. */
#ifndef DYAD_MAP_POLICY_CIDR_H
#define DYAD_MAP_POLICY_CIDR_H

#include <linux/types.h>

#define DY_POLICY_CIDR_MAX 65536

/* Bits before the address: endpoint_id 32 + dir 8 + family 8 + pad 16. A peer prefix of
 * length p is stored with prefixlen = DY_POLICY_CIDR_PREFIX_BASE + p, so an IPv4 entry never
 * matches an IPv6 address (the family byte differs) and entries of two endpoints never mix. */
enum dy_policy_cidr_prefix {
	DY_POLICY_CIDR_PREFIX_BASE = 64,
};

/* Class ids, used as the identity of dy_policy entries, sit above every pod identity (24 bits)
 * so a class can never be taken for a peer. They are per endpoint and direction: the dy_policy
 * key already holds both, so BASE, BASE + 1, ... of each endpoint never collide. */
enum dy_policy_class {
	DY_POLICY_CLASS_BASE = 0x01000000,
};

struct dy_policy_cidr_key {
	__u32 prefixlen;
	__u32 endpoint_id;
	__u8 dir;    /* DY_DIR_* */
	__u8 family; /* DY_FAMILY_* */
	__u8 pad[2];
	__u8 addr[16]; /* network order; IPv4 in the first 4 bytes */
};

struct dy_policy_cidr_value {
	__u32 class_id; /* >= DY_POLICY_CLASS_BASE */
};

#endif
