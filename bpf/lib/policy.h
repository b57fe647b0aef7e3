/* Identity resolution (ipcache) and policy verdicts. */
#ifndef DYAD_LIB_POLICY_H
#define DYAD_LIB_POLICY_H

#include "maps.h"
#include "parse.h"

static __always_inline struct dy_ipcache_info *dy_ipcache_lookup(__u8 family, const __u8 *addr)
{
	struct dy_ipcache_key k = {};

	k.prefixlen = DY_IPCACHE_PREFIX_BASE + (family == DY_FAMILY_V4 ? 32 : 128);
	k.family = family;
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&dy_ipcache, &k);
}

static __always_inline struct dy_endpoint_info *dy_endpoint_lookup(__u8 family, const __u8 *addr)
{
	struct dy_endpoint_key k = {};

	k.family = family;
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&dy_endpoints, &k);
}

/* ipcache first (authoritative for every known prefix), then local endpoints, else world. */
static __always_inline __u32 dy_identity_of(__u8 family, const __u8 *addr)
{
	struct dy_ipcache_info *ic = dy_ipcache_lookup(family, addr);

	if (ic)
		return ic->identity;
	struct dy_endpoint_info *ep = dy_endpoint_lookup(family, addr);
	if (ep)
		return ep->identity;
	return DY_IDENTITY_WORLD;
}

static __always_inline int dy_policy_allows(__u32 endpoint_id, __u32 identity, __u8 dir,
					    __u8 proto, __be16 port)
{
	struct dy_policy_key k = {
		.prefixlen = DY_POLICY_PREFIX_PORT + 16,
		.endpoint_id = endpoint_id,
		.identity = identity,
		.dir = dir,
		.proto = proto,
		.dport = port,
	};
	struct dy_policy_value *v = bpf_map_lookup_elem(&dy_policy, &k);

	return v && v->action == DY_POLICY_ALLOW;
}

/* The class of the longest CIDR entry of this endpoint and direction that holds the peer's
 * address (same family only), or 0 when none does. */
static __always_inline __u32 dy_policy_cidr_class(__u32 endpoint_id, __u8 dir, __u8 family,
						  const __u8 *peer_addr)
{
	struct dy_policy_cidr_key k = {};

	k.prefixlen = DY_POLICY_CIDR_PREFIX_BASE + (family == DY_FAMILY_V4 ? 32 : 128);
	k.endpoint_id = endpoint_id;
	k.dir = dir;
	k.family = family;
	__builtin_memcpy(k.addr, peer_addr, 16);
	struct dy_policy_cidr_value *v = bpf_map_lookup_elem(&dy_policy_cidr, &k);

	return v ? v->class_id : 0;
}

/* Returns 0 when allowed, else the drop reason. A new flow of an enforcing endpoint passes when
 * an entry allows its protocol and port for the peer's identity, for any peer, or for the class
 * of the longest CIDR entry holding the peer's address as on the wire. Within each, the longest
 * port prefix wins; all entries allow, so their union is the policy. */
static __always_inline int dy_policy_verdict(__u32 endpoint_id, __u32 peer_identity, __u8 dir,
					     const struct dy_pkt *p, const __u8 *peer_addr)
{
	__u8 proto = p->t.proto;
	__be16 port = p->policy_port;

	if (dy_policy_allows(endpoint_id, peer_identity, dir, proto, port))
		return 0;
	if (dy_policy_allows(endpoint_id, DY_IDENTITY_ANY, dir, proto, port))
		return 0;
	__u32 class_id = dy_policy_cidr_class(endpoint_id, dir, p->t.family, peer_addr);
	if (class_id && dy_policy_allows(endpoint_id, class_id, dir, proto, port))
		return 0;
	return DY_REASON_DROP_POLICY;
}

#endif
