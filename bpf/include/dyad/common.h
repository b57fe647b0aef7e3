/* Shared constants of the Dyad datapath. Numbers here are part of the user-space contract
 * (libbpf-ts mirrors them), so values are only ever appended, never renumbered. They are enums,
 * not #defines, so the objects' BTF carries them and the drift test compares every value with
 * the TypeScript constants (layouts.c anchors each enum). */
#ifndef DYAD_COMMON_H
#define DYAD_COMMON_H

#include <linux/types.h>

/* Address family tag carried in keys and events; independent of AF_* so the layout does not
 * depend on libc headers. */
enum dy_family {
	DY_FAMILY_V4 = 4,
	DY_FAMILY_V6 = 6,
};

/* Direction seen from the pod: egress = leaving the pod, ingress = entering it. */
enum dy_direction {
	DY_DIR_EGRESS = 1,
	DY_DIR_INGRESS = 2,
	DY_DIR_NODE = 3, /* counters of the uplink program, which is not a pod direction */
};

/* Reserved security identities. Policy entries with identity 0 match any peer. */
enum dy_identity {
	DY_IDENTITY_ANY = 0,
	DY_IDENTITY_HOST = 1,
	DY_IDENTITY_WORLD = 2,
};

/* Endpoint flags: default-deny per direction (policy enforced). */
enum dy_endpoint_flags {
	DY_EP_F_ENFORCE_INGRESS = 1 << 0,
	DY_EP_F_ENFORCE_EGRESS = 1 << 1,
};

/* Counter/event reasons. 0..9 are verdicts that let the packet through, 10+ are drops. */
enum dy_reason {
	DY_REASON_FORWARDED = 1,      /* delivered or forwarded by the program */
	DY_REASON_PASSED = 2,	      /* handed to the kernel stack unchanged */
	DY_REASON_POLICY_ALLOWED = 3, /* new flow allowed by policy (trace) */
	DY_REASON_EVENT_LOST = 4,     /* an event the ring buffer had no room for (counter only) */
	DY_REASON_DROP_POLICY = 10,
	DY_REASON_DROP_UNKNOWN_SOURCE = 11,
	DY_REASON_DROP_MALFORMED = 12,
	DY_REASON_DROP_FIB = 13,
	DY_REASON_DROP_CT_FULL = 14,
	/* 15 was DY_REASON_DROP_POLICY_DENY (explicit deny entries); reserved, never reuse */
	DY_REASON_DROP_IPV6_EXT = 16,	  /* extension chain longer than the parser walks */
	DY_REASON_DROP_FRAG_UNKNOWN = 17, /* non-first fragment whose first fragment was not seen */
	DY_REASON_DROP_NO_ENDPOINT = 18,  /* multicast/broadcast/link-local into a pod, not ND/MLD */
	DY_REASON_LB_NO_BACKEND = 19,	  /* to a Service frontend without ready backend: refused */
	DY_REASON_LB_NO_LOCAL_BACKEND = 20, /* NodePort, externalTrafficPolicy Local, none here */
};

/* Event types in the ring buffer. */
enum dy_event_type {
	DY_EVENT_DROP = 1,
	DY_EVENT_TRACE = 2,
};

/* Event flags. */
enum dy_event_flags {
	DY_EVENT_F_REPLY = 1 << 0, /* the packet belongs to the reply direction of a tracked flow */
};

#endif
