/* Layout of dy_metrics: per-CPU packet and byte counters by reason, direction and family. */
#ifndef DYAD_MAP_METRICS_H
#define DYAD_MAP_METRICS_H

#include <linux/types.h>

#define DY_METRICS_MAX 1024

struct dy_metrics_key {
	__u8 reason; /* DY_REASON_* */
	__u8 dir;    /* DY_DIR_* */
	__u8 family; /* DY_FAMILY_* or 0 for non-IP */
	__u8 pad;
};

struct dy_metrics_value {
	__u64 packets;
	__u64 bytes;
};

#endif
