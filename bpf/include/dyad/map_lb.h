/* Layouts of the service load-balancing maps (dy_lb_*), both families in each.
 *
 *   dy_lb_services  frontend (cluster IP, port, protocol) -> its id, ready backend count, affinity
 *   dy_lb_maglev    frontend id -> Maglev lookup table of backend ids (computed by the agent)
 *   dy_lb_backends  backend id -> address and port (terminating ones stay until they go)
 *   dy_lb_flows     client -> frontend tuple of a connection -> the backend it was given
 *   dy_lb_rnat      backend -> client tuple (a reply as it arrives) -> the frontend to show
 *   dy_lb_affinity  (frontend, client address) -> backend, for sessionAffinity ClientIP
 *   dy_lb_snat      NodePort to a backend on another node: client tuple -> the node's source
 *                   port for it, and the backend's reply tuple -> the client to answer
 */
#ifndef DYAD_MAP_LB_H
#define DYAD_MAP_LB_H

#include <linux/types.h>

#define DY_LB_SERVICES_MAX 16384
#define DY_LB_BACKENDS_MAX 65536
#define DY_LB_FLOWS_MAX 262144
#define DY_LB_AFFINITY_MAX 65536

/* Numbers of the user-space contract (libbpf-ts mirrors them; the drift test compares). */
enum dy_lb_const {
	DY_LB_MAGLEV_M = 1021, /* Maglev table size per frontend: prime, ~100x the backends */
	/* NodePort SNAT source ports: above Linux's default ephemeral range (32768-60999), so the
	 * node's own connections never hold a port a translated one takes */
	DY_LB_SNAT_PORT_MIN = 61000,
	DY_LB_SNAT_PORT_MAX = 65535,
};

enum dy_lb_service_flags {
	DY_LB_SVC_F_AFFINITY = 1 << 0, /* sessionAffinity: ClientIP */
	DY_LB_SVC_F_NODEPORT = 1 << 1, /* a node address: also served to clients beyond the node */
	DY_LB_SVC_F_LOCAL = 1 << 2,    /* externalTrafficPolicy Local: only this node's backends */
};

enum dy_lb_backend_flags {
	DY_LB_BE_F_TERMINATING = 1 << 0, /* finishes its connections, takes no new ones */
};

enum dy_lb_rnat_flags {
	DY_LB_RNAT_F_HAIRPIN = 1 << 0, /* client and backend are one pod: both ends rewritten */
	DY_LB_RNAT_F_NODEPORT = 1 << 1, /* a local backend answering a NodePort client from beyond
					 * the node: from-container rewrites the reply's source */
};

enum dy_lb_snat_flags {
	DY_LB_SNAT_F_REPLY = 1 << 0, /* keyed by the backend's reply: addr/port are the client's */
};

struct dy_lb_service_key {
	__u8 addr[16]; /* cluster IP, network order; IPv4 in the first 4 bytes */
	__be16 port;
	__u8 proto;    /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;   /* DY_FAMILY_* */
};

struct dy_lb_service {
	__u32 id;                 /* key of dy_lb_maglev */
	__u32 backends;           /* ready backends in the table; 0: refuse at once */
	__u32 affinity_timeout_s; /* with DY_LB_SVC_F_AFFINITY */
	__u32 flags;              /* DY_LB_SVC_F_* */
};

struct dy_lb_maglev {
	__u32 backend[DY_LB_MAGLEV_M]; /* backend ids; slot = flow hash % M */
};

struct dy_lb_backend {
	__u8 addr[16];
	__be16 port;
	__u8 family;
	__u8 flags; /* DY_LB_BE_F_* */
};

/* A connection's tuple as one packet carries it (same shape for both maps). */
struct dy_lb_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct dy_lb_flow {
	__u64 expires_ns; /* bpf_ktime_get_ns() deadline; past it the entry counts as gone */
	__u32 backend_id;
	__u32 service_id;
};

struct dy_lb_rnat {
	__u64 expires_ns;
	__u8 addr[16]; /* the cluster IP the client connected to */
	__be16 port;   /* and its port */
	__u8 flags;    /* DY_LB_RNAT_F_* */
	__u8 family;
	__u8 pad[4];
};

/* NodePort with a backend on another node, keyed by dy_lb_flow_key:
 *   client -> frontend tuple (as it arrives)  => addr: the node address, port: the SNAT port
 *   backend -> node:SNAT port tuple (reply)    => addr/port: the client, fport: the NodePort */
struct dy_lb_snat {
	__u64 expires_ns;
	__u8 addr[16];
	__be16 port;
	__be16 fport;
	__u8 family;
	__u8 flags; /* DY_LB_SNAT_F_* */
	__u8 pad[2];
};

struct dy_lb_affinity_key {
	__u32 service_id;
	__u8 family;
	__u8 pad[3];
	__u8 client[16];
};

struct dy_lb_affinity {
	__u64 last_ns; /* last new connection that used it */
	__u32 backend_id;
	__u32 pad;
};

#endif
