// Baseline for bench/maps.ts: the same batch updates as libbpf-ts makes, issued from C as raw
// bpf(BPF_MAP_UPDATE_BATCH) syscalls on the same pinned map with the same key/value bytes.
// Usage: maps_baseline PIN_PATH KEYS_FILE VALUES_FILE COUNT BATCH REPS
// Prints one JSON line: {"batch_per_s":..., "single_per_s":...} (best of REPS each).
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *slurp(const char *path, size_t want)
{
	FILE *f = fopen(path, "rb");
	void *buf = malloc(want);
	if (!f || !buf || fread(buf, 1, want, f) != want) {
		fprintf(stderr, "cannot read %zu bytes from %s\n", want, path);
		exit(1);
	}
	fclose(f);
	return buf;
}

static int clear_map(int fd, const char *keys, uint32_t count, uint32_t ksz)
{
	/* delete what we inserted, one batch; absent keys stop the kernel with ENOENT: fall back */
	for (uint32_t i = 0; i < count; i++) {
		union bpf_attr a = {};
		a.map_fd = fd;
		a.key = (uint64_t)(uintptr_t)(keys + (size_t)i * ksz);
		sys_bpf(BPF_MAP_DELETE_ELEM, &a);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s PIN KEYS VALUES COUNT BATCH REPS\n", argv[0]);
		return 2;
	}
	union bpf_attr a = {};
	a.pathname = (uint64_t)(uintptr_t)argv[1];
	int fd = sys_bpf(BPF_OBJ_GET, &a);
	if (fd < 0) {
		perror("BPF_OBJ_GET");
		return 1;
	}
	struct bpf_map_info info = {};
	memset(&a, 0, sizeof(a));
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof(info);
	a.info.info = (uint64_t)(uintptr_t)&info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0) {
		perror("BPF_OBJ_GET_INFO_BY_FD");
		return 1;
	}
	uint32_t count = strtoul(argv[4], 0, 10), batch = strtoul(argv[5], 0, 10);
	int reps = atoi(argv[6]);
	uint32_t ksz = info.key_size, vsz = info.value_size;
	char *keys = slurp(argv[2], (size_t)count * ksz);
	char *values = slurp(argv[3], (size_t)count * vsz);
	double best_batch = 0, best_single = 0;

	for (int r = 0; r < reps; r++) {
		clear_map(fd, keys, count, ksz);
		double t0 = now_s();
		for (uint32_t off = 0; off < count; off += batch) {
			uint32_t n = count - off < batch ? count - off : batch;
			memset(&a, 0, sizeof(a));
			a.batch.map_fd = fd;
			a.batch.keys = (uint64_t)(uintptr_t)(keys + (size_t)off * ksz);
			a.batch.values = (uint64_t)(uintptr_t)(values + (size_t)off * vsz);
			a.batch.count = n;
			if (sys_bpf(BPF_MAP_UPDATE_BATCH, &a) < 0 || a.batch.count != n) {
				perror("BPF_MAP_UPDATE_BATCH");
				return 1;
			}
		}
		double rate = count / (now_s() - t0);
		if (rate > best_batch)
			best_batch = rate;

		clear_map(fd, keys, count, ksz);
		t0 = now_s();
		for (uint32_t i = 0; i < count; i++) {
			memset(&a, 0, sizeof(a));
			a.map_fd = fd;
			a.key = (uint64_t)(uintptr_t)(keys + (size_t)i * ksz);
			a.value = (uint64_t)(uintptr_t)(values + (size_t)i * vsz);
			if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0) {
				perror("BPF_MAP_UPDATE_ELEM");
				return 1;
			}
		}
		rate = count / (now_s() - t0);
		if (rate > best_single)
			best_single = rate;
	}
	printf("{\"batch_per_s\":%.0f,\"single_per_s\":%.0f}\n", best_batch, best_single);
	return 0;
}
