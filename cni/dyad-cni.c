// SPDX-License-Identifier: Apache-2.0
/*
 * dyad-cni: the CNI plugin binary the container runtime runs. It holds no logic: it forwards the
 * call (the CNI_* environment and stdin) as one JSON message over a unix socket to the node's
 * datapath agent, prints the agent's answer on stdout and exits with the agent's code.
 *
 * Why C: a runtime starts one process per CNI call, and Node's start-up alone (~35 ms) would
 * cost more than the whole ADD of the reference plugins. This starts in well under a millisecond.
 *
 * Wire format, agent side in services/datapath-agent/src/cni/server.ts:
 *   request  {"v":1,"env":{"CNI_COMMAND":"ADD",...},"stdin":"<the config, as a string>"}
 *            then the write side is shut down
 *   reply    "<exit code>\n" followed by what to print on stdout
 *
 * The socket is $DYAD_CNI_SOCKET, else the config's top-level "agentSocket", else
 * /run/dyad/cni.sock. When the agent cannot be reached, this binary answers itself: VERSION from
 * the list below (kept equal to the agent's by a test), STATUS with code 50, anything else with
 * code 11 (try again later).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/dyad/cni.sock"
#define LATEST_VERSION "1.1.0"
#define SUPPORTED_VERSIONS "\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\""
#define MAX_STDIN (4u << 20)
#define MAX_REPLY (4u << 20)
#define DEFAULT_TIMEOUT_S 300

struct buf {
	char *p;
	size_t len, cap;
};

static void die_oom(void)
{
	fputs("dyad-cni: out of memory\n", stderr);
	exit(2);
}

static void buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			die_oom();
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

/* A JSON string literal of n bytes (UTF-8 passes through; control bytes become \u00XX). */
static void buf_json_string(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	buf_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			buf_put(b, e, 2);
		} else if (c < 0x20) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			buf_put(b, e, 6);
		} else {
			buf_put(b, (const char *)&s[i], 1);
		}
	}
	buf_put(b, "\"", 1);
}

/* ---- a scanner for top-level string members of a JSON object (nothing else is needed) ---- */

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* Reads a string starting at s[i] == '"'; decodes simple escapes into out (if given).
 * Returns the index after the closing quote, or 0 on malformed input. */
static size_t read_string(const char *s, size_t n, size_t i, char *out, size_t outcap)
{
	size_t o = 0;
	if (i >= n || s[i] != '"')
		return 0;
	for (i++; i < n; i++) {
		char c = s[i];
		if (c == '"') {
			if (out)
				out[o < outcap ? o : outcap - 1] = '\0';
			return i + 1;
		}
		if (c == '\\') {
			if (++i >= n)
				return 0;
			switch (s[i]) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u':
				/* not needed for paths or versions: keep it undecoded */
				if (i + 4 >= n)
					return 0;
				c = '?';
				i += 4;
				break;
			default: c = s[i]; break;
			}
		}
		if (out && o + 1 < outcap)
			out[o++] = c;
	}
	return 0;
}

/* Skips one JSON value at s[i]; returns the index after it, or 0 on malformed input. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
	int depth = 0;
	i = skip_ws(s, n, i);
	if (i >= n)
		return 0;
	if (s[i] == '"')
		return read_string(s, n, i, NULL, 0);
	if (s[i] != '{' && s[i] != '[') {
		while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
		       s[i] != '\n' && s[i] != '\t' && s[i] != '\r')
			i++;
		return i;
	}
	for (; i < n; i++) {
		if (s[i] == '"') {
			size_t j = read_string(s, n, i, NULL, 0);
			if (!j)
				return 0;
			i = j - 1;
		} else if (s[i] == '{' || s[i] == '[') {
			depth++;
		} else if (s[i] == '}' || s[i] == ']') {
			if (--depth == 0)
				return i + 1;
		}
	}
	return 0;
}

/* Copies the top-level string member `key` into out; returns 1 when found. */
static int top_string(const char *s, size_t n, const char *key, char *out, size_t outcap)
{
	char name[64];
	size_t i = skip_ws(s, n, 0);
	if (i >= n || s[i] != '{')
		return 0;
	i++;
	for (;;) {
		i = skip_ws(s, n, i);
		if (i >= n || s[i] == '}')
			return 0;
		i = read_string(s, n, i, name, sizeof(name));
		if (!i)
			return 0;
		i = skip_ws(s, n, i);
		if (i >= n || s[i] != ':')
			return 0;
		i = skip_ws(s, n, i + 1);
		if (strcmp(name, key) == 0 && i < n && s[i] == '"')
			return read_string(s, n, i, out, outcap) != 0;
		i = skip_value(s, n, i);
		if (!i)
			return 0;
		i = skip_ws(s, n, i);
		if (i < n && s[i] == ',')
			i++;
	}
}

/* ---- answers given without the agent ---- */

static void json_safe(char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			*s = '?';
}

static int local_error(const char *version, int code, const char *msg, const char *details)
{
	struct buf out = { 0 };
	buf_str(&out, "{\"cniVersion\":");
	buf_json_string(&out, version, strlen(version));
	char num[32];
	snprintf(num, sizeof(num), ",\"code\":%d,\"msg\":", code);
	buf_str(&out, num);
	buf_json_string(&out, msg, strlen(msg));
	buf_str(&out, ",\"details\":");
	buf_json_string(&out, details, strlen(details));
	buf_str(&out, "}\n");
	fwrite(out.p, 1, out.len, stdout);
	fflush(stdout);
	return 1;
}

static int local_version(const char *version)
{
	printf("{\"cniVersion\":\"%s\",\"supportedVersions\":[" SUPPORTED_VERSIONS "]}\n", version);
	fflush(stdout);
	return 0;
}

static int unreachable(const char *command, const char *version, const char *details)
{
	if (command && strcmp(command, "VERSION") == 0)
		return local_version(version);
	if (command && strcmp(command, "STATUS") == 0)
		return local_error(version, 50, "dyad agent not available", details);
	return local_error(version, 11, "dyad agent unreachable", details);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(void)
{
	/* TRACEPARENT/TRACESTATE: a runtime's W3C trace context (the OpenTelemetry environment
	 * carrier), so the agent's span of this call joins the runtime's trace. */
	static const char *vars[] = { "CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS",
				      "CNI_IFNAME",  "CNI_ARGS",        "CNI_PATH",
				      "TRACEPARENT", "TRACESTATE" };
	struct buf in = { 0 }, req = { 0 }, reply = { 0 };
	char version[32] = LATEST_VERSION;
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char details[512];
	const char *command = getenv("CNI_COMMAND");

	signal(SIGPIPE, SIG_IGN);

	for (;;) {
		char chunk[65536];
		ssize_t r = read(0, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return local_error(version, 5, "cannot read stdin", strerror(errno));
		if (r == 0)
			break;
		if (in.len + (size_t)r > MAX_STDIN)
			return local_error(version, 5, "cannot read stdin", "more than 4 MiB");
		buf_put(&in, chunk, (size_t)r);
	}
	if (!in.p)
		buf_put(&in, "", 0);

	char v[32];
	if (top_string(in.p, in.len, "cniVersion", v, sizeof(v)) && v[0]) {
		json_safe(v);
		memcpy(version, v, sizeof(version));
	}
	const char *env_sock = getenv("DYAD_CNI_SOCKET");
	if (env_sock && *env_sock) {
		snprintf(sock_path, sizeof(sock_path), "%s", env_sock);
	} else if (!top_string(in.p, in.len, "agentSocket", sock_path, sizeof(sock_path)) ||
		   !sock_path[0]) {
		snprintf(sock_path, sizeof(sock_path), "%s", DEFAULT_SOCKET);
	}

	buf_str(&req, "{\"v\":1,\"env\":{");
	int first = 1;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *val = getenv(vars[i]);
		if (!val)
			continue;
		if (!first)
			buf_str(&req, ",");
		first = 0;
		buf_json_string(&req, vars[i], strlen(vars[i]));
		buf_str(&req, ":");
		buf_json_string(&req, val, strlen(val));
	}
	buf_str(&req, "},\"stdin\":");
	buf_json_string(&req, in.p, in.len);
	buf_str(&req, "}");

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(details, sizeof(details), "socket: %s", strerror(errno));
		return unreachable(command, version, details);
	}
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock_path);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		snprintf(details, sizeof(details), "connect %s: %s", sock_path, strerror(errno));
		return unreachable(command, version, details);
	}
	long timeout = DEFAULT_TIMEOUT_S;
	const char *t = getenv("DYAD_CNI_TIMEOUT");
	if (t && atol(t) > 0)
		timeout = atol(t);
	struct timeval tv = { .tv_sec = timeout };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	if (write_all(fd, req.p, req.len) < 0) {
		snprintf(details, sizeof(details), "send to %s: %s", sock_path, strerror(errno));
		return unreachable(command, version, details);
	}
	shutdown(fd, SHUT_WR);

	for (;;) {
		char chunk[65536];
		ssize_t r = recv(fd, chunk, sizeof(chunk), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				snprintf(details, sizeof(details), "no answer from %s in %ld s", sock_path,
					 timeout);
			else
				snprintf(details, sizeof(details), "recv from %s: %s", sock_path,
					 strerror(errno));
			return local_error(version, 11, "dyad agent did not answer", details);
		}
		if (r == 0)
			break;
		if (reply.len + (size_t)r > MAX_REPLY)
			return local_error(version, 11, "dyad agent answer too long", sock_path);
		buf_put(&reply, chunk, (size_t)r);
	}
	close(fd);

	char *nl = reply.p ? memchr(reply.p, '\n', reply.len) : NULL;
	char *end = NULL;
	long code = reply.p ? strtol(reply.p, &end, 10) : -1;
	if (!nl || end != nl || code < 0 || code > 255) {
		snprintf(details, sizeof(details), "%s closed the connection without a valid answer",
			 sock_path);
		return local_error(version, 11, "dyad agent did not answer", details);
	}
	size_t off = (size_t)(nl - reply.p) + 1;
	fwrite(reply.p + off, 1, reply.len - off, stdout);
	fflush(stdout);
	return (int)code;
}
