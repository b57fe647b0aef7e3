/* Reassembly-free tracking of fragmented datagrams. Only the first fragment carries the L4
 * header; its identifiers are recorded under (family, proto, fragment id, saddr, daddr) and
 * every later fragment of the datagram is judged with them, so fragments meet the same
 * conntrack entry and policy entry as the first one. A later fragment whose first was never
 * seen (or was evicted) has no known ports: it is opaque, and an enforcing endpoint drops it.
 * Overlapping fragments cannot rewrite the recorded header: Linux drops overlaps in both
 * families (RFC 5722 for IPv6) before reassembly, and a first fragment too short for the L4
 * identifiers does not parse. */
#ifndef DYAD_LIB_FRAG_H
#define DYAD_LIB_FRAG_H

#include "maps.h"
#include "parse.h"

static __always_inline void dy_frag_track(struct dy_pkt *p)
{
	if (p->frag == DY_FRAG_FIRST) {
		struct dy_frag_info v = {
			.sport = p->t.sport,
			.dport = p->t.dport,
			.proto = p->t.proto,
			.icmp_type = p->icmp_type,
		};

		bpf_map_update_elem(&dy_frags, &p->frag_key, &v, BPF_ANY);
		return;
	}
	if (p->frag != DY_FRAG_LATER)
		return;
	struct dy_frag_info *v = bpf_map_lookup_elem(&dy_frags, &p->frag_key);

	if (!v) {
		p->opaque = DY_REASON_DROP_FRAG_UNKNOWN;
		return;
	}
	p->t.sport = v->sport;
	p->t.dport = v->dport;
	p->t.proto = v->proto;
	p->icmp_type = v->icmp_type;
	p->policy_port = dy_is_icmp_proto(v->proto) ? bpf_htons(v->icmp_type) : v->dport;
}

#endif
