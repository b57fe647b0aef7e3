#ifndef DYAD_LIB_CONFIG_H
#define DYAD_LIB_CONFIG_H

#include "maps.h"

#define DY_CT_TCP_S_DEFAULT 21600
#define DY_CT_TCP_CLOSE_S_DEFAULT 10
#define DY_CT_UDP_S_DEFAULT 60
#define DY_CT_ICMP_S_DEFAULT 30

static __always_inline const struct dy_config *dy_config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dy_config, &zero);
}

static __always_inline __u32 dy_or(__u32 v, __u32 def)
{
	return v ? v : def;
}

#endif
