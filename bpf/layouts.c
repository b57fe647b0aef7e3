// SPDX-License-Identifier: GPL-2.0
/* Never loaded: one global per layout struct, so this object's BTF describes every struct the
 * user-space codecs mirror (the ring-buffer event and config have no other BTF anchor). The
 * codec drift test reads sizes and member offsets from here. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dyad/map_config.h"
#include "dyad/map_conntrack.h"
#include "dyad/map_endpoints.h"
#include "dyad/map_events.h"
#include "dyad/map_ipcache.h"
#include "dyad/map_metrics.h"
#include "dyad/map_policy.h"

struct dy_endpoint_key dy_layout_endpoint_key;
struct dy_endpoint_info dy_layout_endpoint_info;
struct dy_ipcache_key dy_layout_ipcache_key;
struct dy_ipcache_info dy_layout_ipcache_info;
struct dy_policy_key dy_layout_policy_key;
struct dy_policy_value dy_layout_policy_value;
struct dy_ct_key dy_layout_ct_key;
struct dy_ct_entry dy_layout_ct_entry;
struct dy_metrics_key dy_layout_metrics_key;
struct dy_metrics_value dy_layout_metrics_value;
struct dy_event dy_layout_event;
struct dy_config dy_layout_config;

char LICENSE[] SEC("license") = "GPL";
