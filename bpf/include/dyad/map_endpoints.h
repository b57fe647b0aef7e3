/* Layout of dy_endpoints: local pod address (either family) -> where and who it is. */
#ifndef DYAD_MAP_ENDPOINTS_H
#define DYAD_MAP_ENDPOINTS_H

#include <linux/types.h>

#define DY_ENDPOINTS_MAX 65536

struct dy_endpoint_key {
	__u8 addr[16]; /* network order; IPv4 uses the first 4 bytes, rest zero */
	__u8 family;   /* DY_FAMILY_V4 / DY_FAMILY_V6 */
	__u8 pad[3];
};

struct dy_endpoint_info {
	__u32 ifindex;     /* host side of the pod's veth */
	__u32 endpoint_id;
	__u32 identity;
	__u32 flags;       /* DY_EP_F_* */
	__u8 mac[6];       /* pod (container side) MAC */
	__u8 node_mac[6];  /* host-side veth MAC, used as source on delivery */
};

#endif
