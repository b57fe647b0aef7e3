/* Shared constants of the Dyad datapath. Numbers here are part of the user-space contract
 * (libbpf-ts codecs mirror them), so values are only ever appended, never renumbered. */
#ifndef DYAD_COMMON_H
#define DYAD_COMMON_H

#include <linux/types.h>

/* Address family tag carried in keys and events; independent of AF_* so the layout does not
 * depend on libc headers. */
#define DY_FAMILY_V4 4
#define DY_FAMILY_V6 6

/* Direction seen from the pod: egress = leaving the pod, ingress = entering it. */
#define DY_DIR_EGRESS 1
#define DY_DIR_INGRESS 2
#define DY_DIR_NODE 3 /* counters of the uplink program, which is not a pod direction */

/* Reserved security identities. Policy entries with identity 0 match any peer. */
#define DY_IDENTITY_ANY 0
#define DY_IDENTITY_HOST 1
#define DY_IDENTITY_WORLD 2

/* Endpoint flags: default-deny per direction (policy enforced). */
#define DY_EP_F_ENFORCE_INGRESS (1U << 0)
#define DY_EP_F_ENFORCE_EGRESS (1U << 1)

/* Counter/event reasons. 0..9 are verdicts that let the packet through, 10+ are drops. */
#define DY_REASON_FORWARDED 1 /* delivered or forwarded by the program */
#define DY_REASON_PASSED 2    /* handed to the kernel stack unchanged */
#define DY_REASON_POLICY_ALLOWED 3 /* new flow allowed by policy (trace) */
#define DY_REASON_DROP_POLICY 10
#define DY_REASON_DROP_UNKNOWN_SOURCE 11
#define DY_REASON_DROP_MALFORMED 12
#define DY_REASON_DROP_FIB 13
#define DY_REASON_DROP_CT_FULL 14
#define DY_REASON_DROP_POLICY_DENY 15 /* explicit deny entry */

/* Event types in the ring buffer. */
#define DY_EVENT_DROP 1
#define DY_EVENT_TRACE 2

#endif
