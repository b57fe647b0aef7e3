/* BTF-defined maps of the datapath. Every map is pinned by the loader (libbpf-ts sets the pin
 * path per map), so a restarted agent reuses the kernel's state. */
#ifndef DYAD_LIB_MAPS_H
#define DYAD_LIB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dyad/common.h"
#include "dyad/map_config.h"
#include "dyad/map_conntrack.h"
#include "dyad/map_endpoints.h"
#include "dyad/map_events.h"
#include "dyad/map_frags.h"
#include "dyad/map_ipcache.h"
#include "dyad/map_metrics.h"
#include "dyad/map_policy.h"
#include "dyad/map_policy_cidr.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct dy_endpoint_key);
	__type(value, struct dy_endpoint_info);
	__uint(max_entries, DY_ENDPOINTS_MAX);
} dy_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct dy_ipcache_key);
	__type(value, struct dy_ipcache_info);
	__uint(max_entries, DY_IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} dy_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct dy_policy_key);
	__type(value, struct dy_policy_value);
	__uint(max_entries, DY_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} dy_policy SEC(".maps");

/* The prototype of every endpoint's table: the kernel admits an inner map into dy_conntrack
 * only with this type, key and value size and flags (max_entries may differ for hashes). Sizes,
 * not BTF types: the structs are only reached through this pointer, so BTF has them as
 * forward declarations (layouts.c anchors them for the drift test). */
struct dy_ct_table {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(key_size, sizeof(struct dy_ct_key));
	__uint(value_size, sizeof(struct dy_ct_entry));
	__uint(max_entries, DY_CT_ENDPOINT_ENTRIES);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32); /* endpoint id */
	__uint(max_entries, DY_CT_ENDPOINTS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the endpoints, not the maximum */
	__array(values, struct dy_ct_table);
} dy_conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct dy_policy_cidr_key);
	__type(value, struct dy_policy_cidr_value);
	__uint(max_entries, DY_POLICY_CIDR_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} dy_policy_cidr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct dy_frag_key);
	__type(value, struct dy_frag_info);
	__uint(max_entries, DY_FRAGS_MAX);
} dy_frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct dy_metrics_key);
	__type(value, struct dy_metrics_value);
	__uint(max_entries, DY_METRICS_MAX);
} dy_metrics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DY_EVENTS_BYTES);
} dy_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct dy_config);
	__uint(max_entries, 1);
} dy_config SEC(".maps");

#endif
