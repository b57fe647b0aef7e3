// SPDX-License-Identifier: GPL-2.0
/* Never loaded: one global per layout struct and per contract enum, so this object's BTF
 * describes every struct and constant user space mirrors (the ring-buffer event and config have
 * no other BTF anchor). The drift test reads sizes, member offsets and enum values from here. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dyad/common.h"
#include "dyad/map_config.h"
#include "dyad/map_conntrack.h"
#include "dyad/map_endpoints.h"
#include "dyad/map_events.h"
#include "dyad/map_frags.h"
#include "dyad/map_ipcache.h"
#include "dyad/map_lb.h"
#include "dyad/map_metrics.h"
#include "dyad/map_policy.h"
#include "dyad/map_policy_cidr.h"

struct dy_endpoint_key dy_layout_endpoint_key;
struct dy_endpoint_info dy_layout_endpoint_info;
struct dy_ipcache_key dy_layout_ipcache_key;
struct dy_ipcache_info dy_layout_ipcache_info;
struct dy_policy_key dy_layout_policy_key;
struct dy_policy_value dy_layout_policy_value;
struct dy_policy_cidr_key dy_layout_policy_cidr_key;
struct dy_policy_cidr_value dy_layout_policy_cidr_value;
struct dy_ct_key dy_layout_ct_key;
struct dy_ct_entry dy_layout_ct_entry;
struct dy_frag_key dy_layout_frag_key;
struct dy_frag_info dy_layout_frag_info;
struct dy_metrics_key dy_layout_metrics_key;
struct dy_metrics_value dy_layout_metrics_value;
struct dy_event dy_layout_event;
struct dy_config dy_layout_config;
struct dy_lb_service_key dy_layout_lb_service_key;
struct dy_lb_service dy_layout_lb_service;
struct dy_lb_maglev dy_layout_lb_maglev;
struct dy_lb_backend dy_layout_lb_backend;
struct dy_lb_flow_key dy_layout_lb_flow_key;
struct dy_lb_flow dy_layout_lb_flow;
struct dy_lb_rnat dy_layout_lb_rnat;
struct dy_lb_snat dy_layout_lb_snat;
struct dy_lb_affinity_key dy_layout_lb_affinity_key;
struct dy_lb_affinity dy_layout_lb_affinity;

/* One global per enum of the user-space contract, so BTF keeps its names and values. */
enum dy_family dy_enum_family;
enum dy_direction dy_enum_direction;
enum dy_identity dy_enum_identity;
enum dy_endpoint_flags dy_enum_endpoint_flags;
enum dy_reason dy_enum_reason;
enum dy_event_type dy_enum_event_type;
enum dy_event_flags dy_enum_event_flags;
enum dy_ipcache_prefix dy_enum_ipcache_prefix;
enum dy_ipcache_flags dy_enum_ipcache_flags;
enum dy_policy_prefix dy_enum_policy_prefix;
enum dy_policy_action dy_enum_policy_action;
enum dy_policy_cidr_prefix dy_enum_policy_cidr_prefix;
enum dy_policy_class dy_enum_policy_class;
enum dy_ct_flags dy_enum_ct_flags;
enum dy_config_flags dy_enum_config_flags;
enum dy_lb_const dy_enum_lb_const;
enum dy_lb_service_flags dy_enum_lb_service_flags;
enum dy_lb_backend_flags dy_enum_lb_backend_flags;
enum dy_lb_rnat_flags dy_enum_lb_rnat_flags;
enum dy_lb_snat_flags dy_enum_lb_snat_flags;

char LICENSE[] SEC("license") = "GPL";
