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

/* Returns 0 when allowed, else the drop reason. Longest port prefix wins; an entry for the
 * exact peer identity is preferred over a wildcard-identity entry. */
static __always_inline int dy_policy_verdict(__u32 endpoint_id, __u32 peer_identity, __u8 dir,
					     __u8 proto, __be16 port)
{
	struct dy_policy_key k = {
		.prefixlen = DY_POLICY_PREFIX_PORT + 16,
		.endpoint_id = endpoint_id,
		.identity = peer_identity,
		.dir = dir,
		.proto = proto,
		.dport = port,
	};
	struct dy_policy_value *v = bpf_map_lookup_elem(&dy_policy, &k);

	if (!v) {
		k.identity = DY_IDENTITY_ANY;
		v = bpf_map_lookup_elem(&dy_policy, &k);
	}
	if (!v)
		return DY_REASON_DROP_POLICY;
	if (v->action == DY_POLICY_ALLOW)
		return 0;
	return DY_REASON_DROP_POLICY_DENY;
}

#endif
