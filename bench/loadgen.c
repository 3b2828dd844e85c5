/*
 * loadgen -- a small closed-loop HTTP/1.1 load generator.
 *
 * Each of the -c connections is a closed-loop client: it writes one request,
 * reads the complete response, and only then writes the next one (keep-alive,
 * no pipelining).  One thread (or -t threads, each owning a share of the
 * connections) drives all of its sockets with a level-triggered epoll loop.
 *
 * Latency of a request = CLOCK_MONOTONIC from just before its first byte is
 * written to just after the last byte of its response has been read.  Every
 * latency of the measured window is kept; percentiles are exact (nearest rank
 * over the sorted array).
 *
 * Build: make -C bench loadgen      (gcc, libc + pthread only)
 * See bench/LOADGEN.md for the flags and output format.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEQ_TOKEN "{{SEQ}}"
#define SEQ_TOKEN_LEN 7
#define IN_BUF_INIT (16 * 1024)
#define MAX_HEADER_BYTES (1024 * 1024)
#define MAX_CHUNK_LINE 4096
#define CONNECT_BACKOFF_NS (10 * 1000 * 1000ULL)
#define MAX_EVENTS 256

/* exit codes */
#define EXIT_RUNTIME 1 /* server unreachable, nothing measured */
#define EXIT_USAGE 2   /* bad flags, bad URL, unreadable bodies file */

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("loadgen: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die(EXIT_RUNTIME, "out of memory");
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die(EXIT_RUNTIME, "out of memory");
    return q;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static size_t u64_digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* writes exactly u64_digits(v) characters, no terminator */
static void u64_write(char *dst, uint64_t v, size_t ndig)
{
    for (size_t i = ndig; i > 0; i--) {
        dst[i - 1] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* ------------------------------------------------------------------------ */
/* request templates: text with {{SEQ}} placeholders                          */

typedef struct {
    char *text;
    size_t len;
    size_t nseq;
    size_t *pos; /* offsets of each {{SEQ}} in text */
} tmpl_t;

static void tmpl_init(tmpl_t *t, const char *s, size_t len)
{
    t->text = xmalloc(len + 1);
    memcpy(t->text, s, len);
    t->text[len] = '\0';
    t->len = len;
    t->nseq = 0;
    t->pos = NULL;
    size_t cap = 0;
    const char *p = t->text;
    const char *end = t->text + len;
    while (p < end) {
        const char *hit = memmem(p, (size_t)(end - p), SEQ_TOKEN, SEQ_TOKEN_LEN);
        if (!hit)
            break;
        if (t->nseq == cap) {
            cap = cap ? cap * 2 : 4;
            t->pos = xrealloc(t->pos, cap * sizeof *t->pos);
        }
        t->pos[t->nseq++] = (size_t)(hit - t->text);
        p = hit + SEQ_TOKEN_LEN;
    }
}

static void tmpl_free(tmpl_t *t)
{
    free(t->text);
    free(t->pos);
    t->text = NULL;
    t->pos = NULL;
}

static size_t tmpl_len(const tmpl_t *t, size_t seq_digits)
{
    return t->len - t->nseq * SEQ_TOKEN_LEN + t->nseq * seq_digits;
}

/* renders into dst (which must have tmpl_len() bytes), returns bytes written */
static size_t tmpl_render(const tmpl_t *t, char *dst, uint64_t seq, size_t seq_digits)
{
    size_t o = 0, from = 0;
    for (size_t i = 0; i < t->nseq; i++) {
        size_t n = t->pos[i] - from;
        memcpy(dst + o, t->text + from, n);
        o += n;
        u64_write(dst + o, seq, seq_digits);
        o += seq_digits;
        from = t->pos[i] + SEQ_TOKEN_LEN;
    }
    memcpy(dst + o, t->text + from, t->len - from);
    return o + (t->len - from);
}

/* ------------------------------------------------------------------------ */
/* configuration                                                             */

typedef struct {
    int connections;
    int threads;
    double duration_s; /* <= 0: no time limit */
    double warmup_s;
    uint64_t max_requests; /* 0: no request limit */
    double timeout_s;
    uint64_t seq_start;
    int json;
    const char *method;
    const char *url;
    const char *bodies_path;
    char **headers;
    size_t nheaders;

    /* derived */
    char host[256];
    int port;
    char path[8192];
    struct sockaddr_in addr;
    int is_head;

    tmpl_t head;     /* request line + headers, without Content-Length / final CRLF */
    int has_body;    /* requests carry a body (and a Content-Length header) */
    tmpl_t *bodies;  /* nbodies body templates (--bodies) */
    size_t nbodies;
    char **static_req; /* fully rendered request per body when no {{SEQ}} applies */
    size_t *static_len;
    size_t nstatic;
} config_t;

static config_t cfg;

/* shared across threads */
static uint64_t g_seq;    /* next request number offset (atomic) */
static uint64_t g_issued; /* measured requests issued so far (atomic, -n mode) */
static volatile sig_atomic_t g_interrupted;
static uint64_t g_t_start, g_t_measure, g_t_end; /* g_t_end: UINT64_MAX if untimed */
static uint64_t g_timeout_ns;

/* ------------------------------------------------------------------------ */
/* per-thread statistics and connections                                      */

enum { ERR_CONNECT, ERR_READ, ERR_WRITE, ERR_TIMEOUT, ERR_PROTOCOL, ERR_KINDS };
static const char *const err_names[ERR_KINDS] = {"connect", "read", "write", "timeout", "protocol"};

typedef struct {
    uint64_t *lat;
    size_t nlat, caplat;
    uint64_t status[600];
    uint64_t other_status; /* status codes outside 100..599 never counted: protocol error */
    uint64_t errors[ERR_KINDS];
    uint64_t reconnects;
    uint64_t abandoned;
} stats_t;

enum cstate { CS_BACKOFF, CS_CONNECTING, CS_ACTIVE, CS_DONE };
enum pstate { P_HEAD, P_BODY_LEN, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_CRLF, P_TRAILER, P_BODY_EOF };

typedef struct thread_s thread_t;

typedef struct {
    thread_t *th;
    int fd;
    uint32_t gen; /* bumped on every new socket */
    enum cstate state;
    uint32_t ev; /* currently registered epoll events */

    /* outgoing request */
    const char *out;  /* points at own_out or a static request */
    size_t out_len, out_off;
    char *own_out;
    size_t own_cap;
    int has_req;      /* a request is assigned (in flight or pending retry) */
    int measured;     /* the request counts towards the results */
    int retried;      /* the request has already been re-sent once */
    int got_bytes;    /* any byte of the response has arrived */
    uint64_t start_ns;
    uint64_t deadline_ns; /* request or connect timeout */
    uint64_t reqs_on_conn;

    /* incoming response */
    char *in;
    size_t in_len, in_pos, in_cap, scan;
    enum pstate ps;
    uint64_t remaining;
    int status;
    int keepalive;

    uint64_t backoff_until;
    uint64_t fail_since; /* first of a run of consecutive connect failures, 0 if none */
} conn_t;

struct thread_s {
    int idx;
    int epfd;
    conn_t *conns;
    int nconns;
    int live; /* connections not in CS_DONE */
    stats_t st;
    uint64_t t_exit;
    pthread_t tid;
};

/* ------------------------------------------------------------------------ */
/* URL, headers, bodies                                                      */

static void parse_url(const char *url)
{
    const char *p = url;
    if (strncasecmp(p, "https://", 8) == 0)
        die(EXIT_USAGE, "bad URL '%s': https is not supported (plain http only)", url);
    if (strncasecmp(p, "http://", 7) != 0)
        die(EXIT_USAGE, "bad URL '%s': must start with http://", url);
    p += 7;
    const char *host_end = p + strcspn(p, ":/?#");
    size_t hlen = (size_t)(host_end - p);
    if (hlen == 0 || hlen >= sizeof cfg.host)
        die(EXIT_USAGE, "bad URL '%s': missing or overlong host", url);
    memcpy(cfg.host, p, hlen);
    cfg.host[hlen] = '\0';
    p = host_end;
    cfg.port = 80;
    if (*p == ':') {
        p++;
        char *end;
        errno = 0;
        long port = strtol(p, &end, 10);
        if (end == p || errno || port < 1 || port > 65535 || (*end && *end != '/' && *end != '?'))
            die(EXIT_USAGE, "bad URL '%s': invalid port", url);
        cfg.port = (int)port;
        p = end;
    }
    if (*p == '#')
        die(EXIT_USAGE, "bad URL '%s': fragments are not allowed", url);
    if (*p == '\0') {
        strcpy(cfg.path, "/");
    } else {
        size_t plen = strcspn(p, "#");
        if (plen + 2 >= sizeof cfg.path)
            die(EXIT_USAGE, "bad URL '%s': path too long", url);
        if (*p == '?') { /* http://h:p?x=1 -> /?x=1 */
            cfg.path[0] = '/';
            memcpy(cfg.path + 1, p, plen);
            cfg.path[plen + 1] = '\0';
        } else {
            memcpy(cfg.path, p, plen);
            cfg.path[plen] = '\0';
        }
    }
    for (const char *q = cfg.path; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            die(EXIT_USAGE, "bad URL '%s': path contains whitespace or control characters", url);

    memset(&cfg.addr, 0, sizeof cfg.addr);
    cfg.addr.sin_family = AF_INET;
    cfg.addr.sin_port = htons((uint16_t)cfg.port);
    if (strcasecmp(cfg.host, "localhost") == 0) {
        cfg.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, cfg.host, &cfg.addr.sin_addr) != 1) {
        die(EXIT_USAGE, "bad URL '%s': host must be an IPv4 address or 'localhost'", url);
    }
}

static int header_is(const char *h, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(h, name, n) == 0 && h[n] == ':';
}

static void check_headers(int *user_host, int *user_ctype)
{
    *user_host = *user_ctype = 0;
    for (size_t i = 0; i < cfg.nheaders; i++) {
        const char *h = cfg.headers[i];
        const char *colon = strchr(h, ':');
        if (!colon || colon == h)
            die(EXIT_USAGE, "bad header '%s': expected 'Name: value'", h);
        for (const char *q = h; q < colon; q++)
            if ((unsigned char)*q <= ' ' || *q == 0x7f)
                die(EXIT_USAGE, "bad header '%s': invalid character in name", h);
        for (const char *q = h; *q; q++)
            if (*q == '\r' || *q == '\n')
                die(EXIT_USAGE, "bad header: contains CR or LF");
        if (header_is(h, "content-length") || header_is(h, "transfer-encoding"))
            die(EXIT_USAGE, "header '%.*s' is set automatically; do not pass it with -H",
                (int)(colon - h), h);
        if (header_is(h, "host"))
            *user_host = 1;
        if (header_is(h, "content-type"))
            *user_ctype = 1;
    }
}

static void load_bodies(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(EXIT_USAGE, "cannot read bodies file '%s': %s", path, strerror(errno));
    size_t cap = 64 * 1024, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        free(buf);
        die(EXIT_USAGE, "cannot read bodies file '%s': %s", path, strerror(e));
    }
    fclose(f);

    size_t bcap = 0;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *e = le;
        if (e > p && e[-1] == '\r')
            e--;
        /* skip lines that are empty or whitespace only */
        const char *q = p;
        while (q < e && (*q == ' ' || *q == '\t'))
            q++;
        if (q < e) {
            if (cfg.nbodies == bcap) {
                bcap = bcap ? bcap * 2 : 64;
                cfg.bodies = xrealloc(cfg.bodies, bcap * sizeof *cfg.bodies);
            }
            tmpl_init(&cfg.bodies[cfg.nbodies++], p, (size_t)(e - p));
        }
        p = nl ? nl + 1 : end;
    }
    free(buf);
    if (cfg.nbodies == 0)
        die(EXIT_USAGE, "bodies file '%s' has no non-empty lines", path);
}

/* Build the header template, then pre-render every request that has no {{SEQ}}. */
static void build_requests(void)
{
    int user_host, user_ctype;
    check_headers(&user_host, &user_ctype);

    size_t cap = strlen(cfg.method) + strlen(cfg.path) + strlen(cfg.host) + 128;
    for (size_t i = 0; i < cfg.nheaders; i++)
        cap += strlen(cfg.headers[i]) + 2;
    char *h = xmalloc(cap);
    size_t n = (size_t)snprintf(h, cap, "%s %s HTTP/1.1\r\n", cfg.method, cfg.path);
    if (!user_host) {
        if (cfg.port == 80)
            n += (size_t)snprintf(h + n, cap - n, "Host: %s\r\n", cfg.host);
        else
            n += (size_t)snprintf(h + n, cap - n, "Host: %s:%d\r\n", cfg.host, cfg.port);
    }
    for (size_t i = 0; i < cfg.nheaders; i++)
        n += (size_t)snprintf(h + n, cap - n, "%s\r\n", cfg.headers[i]);
    if (cfg.nbodies && !user_ctype)
        n += (size_t)snprintf(h + n, cap - n, "Content-Type: application/json\r\n");
    tmpl_init(&cfg.head, h, n);
    free(h);

    cfg.has_body = cfg.nbodies > 0 || strcasecmp(cfg.method, "POST") == 0 ||
                   strcasecmp(cfg.method, "PUT") == 0 || strcasecmp(cfg.method, "PATCH") == 0;

    /* static (pre-rendered) requests: one per body, or a single one without bodies */
    cfg.nstatic = cfg.nbodies ? cfg.nbodies : 1;
    cfg.static_req = xmalloc(cfg.nstatic * sizeof *cfg.static_req);
    cfg.static_len = xmalloc(cfg.nstatic * sizeof *cfg.static_len);
    for (size_t i = 0; i < cfg.nstatic; i++) {
        const tmpl_t *b = cfg.nbodies ? &cfg.bodies[i] : NULL;
        cfg.static_req[i] = NULL;
        cfg.static_len[i] = 0;
        if (cfg.head.nseq || (b && b->nseq))
            continue;
        size_t blen = b ? b->len : 0;
        size_t rcap = cfg.head.len + blen + 64;
        char *r = xmalloc(rcap);
        size_t o = tmpl_render(&cfg.head, r, 0, 0);
        if (cfg.has_body)
            o += (size_t)snprintf(r + o, rcap - o, "Content-Length: %zu\r\n", blen);
        memcpy(r + o, "\r\n", 2);
        o += 2;
        if (b) {
            memcpy(r + o, b->text, blen);
            o += blen;
        }
        cfg.static_req[i] = r;
        cfg.static_len[i] = o;
    }
}

static void free_config(void)
{
    tmpl_free(&cfg.head);
    for (size_t i = 0; i < cfg.nbodies; i++)
        tmpl_free(&cfg.bodies[i]);
    free(cfg.bodies);
    for (size_t i = 0; i < cfg.nstatic; i++)
        free(cfg.static_req[i]);
    free(cfg.static_req);
    free(cfg.static_len);
    free(cfg.headers);
}

/* ------------------------------------------------------------------------ */
/* connection handling                                                        */

static int in_measure_window(uint64_t t)
{
    return t >= g_t_measure && t < g_t_end;
}

static void count_error(conn_t *c, int kind, int measured)
{
    if (measured)
        c->th->st.errors[kind]++;
}

static void ep_set(conn_t *c, uint32_t ev)
{
    if (c->ev == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(c->th->epfd, EPOLL_CTL_MOD, c->fd, &e) < 0)
        die(EXIT_RUNTIME, "epoll_ctl(MOD): %s", strerror(errno));
    c->ev = ev;
}

static void conn_close_fd(conn_t *c)
{
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    c->ev = 0;
}

static void conn_set_done(conn_t *c)
{
    conn_close_fd(c);
    if (c->state != CS_DONE) {
        c->state = CS_DONE;
        c->th->live--;
    }
    c->has_req = 0;
}

static void parser_reset(conn_t *c)
{
    c->ps = P_HEAD;
    c->scan = c->in_pos;
    c->remaining = 0;
    c->status = 0;
    c->keepalive = 1;
    c->got_bytes = 0;
}

static void conn_connect(conn_t *c);
static void conn_send(conn_t *c);
static void conn_next_request(conn_t *c);

static void conn_backoff(conn_t *c, uint64_t now)
{
    conn_close_fd(c);
    if (!c->fail_since)
        c->fail_since = now;
    if (now - c->fail_since > g_timeout_ns) {
        /* the server has been unreachable for a whole timeout: give this connection up */
        c->th->st.abandoned++;
        if (c->has_req && c->measured)
            c->th->st.errors[ERR_CONNECT]++; /* the request it carried is lost as well */
        conn_set_done(c);
        return;
    }
    c->state = CS_BACKOFF;
    c->backoff_until = now + CONNECT_BACKOFF_NS;
}

/* Close the current socket and open a new one (counted as a reconnect). */
static void conn_reconnect(conn_t *c)
{
    conn_close_fd(c);
    if (in_measure_window(now_ns()))
        c->th->st.reconnects++;
    conn_connect(c);
}

/* A request failed: count it, drop it, and continue on a fresh connection. */
static void conn_fail(conn_t *c, int kind)
{
    count_error(c, kind, c->has_req && c->measured);
    c->has_req = 0;
    conn_reconnect(c);
}

/* Server closed a reused connection before answering: re-send the same request once. */
static int conn_try_retry(conn_t *c)
{
    if (!c->has_req || c->got_bytes || c->retried || c->reqs_on_conn == 0)
        return 0;
    c->retried = 1;
    c->out_off = 0;
    conn_reconnect(c);
    return 1;
}

static void conn_on_connected(conn_t *c)
{
    c->state = CS_ACTIVE;
    c->fail_since = 0;
    c->reqs_on_conn = 0;
    c->in_len = c->in_pos = 0;
    parser_reset(c);
    if (c->has_req) { /* pending retry: same bytes, same start time */
        c->out_off = 0;
        c->deadline_ns = now_ns() + g_timeout_ns;
        conn_send(c);
    } else {
        conn_next_request(c);
    }
}

static void conn_connect(conn_t *c)
{
    uint64_t now = now_ns();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        count_error(c, ERR_CONNECT, in_measure_window(now));
        conn_backoff(c, now);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->gen++;
    int r = connect(fd, (const struct sockaddr *)&cfg.addr, sizeof cfg.addr);
    if (r < 0 && errno != EINPROGRESS) {
        count_error(c, ERR_CONNECT, in_measure_window(now));
        conn_backoff(c, now);
        return;
    }
    c->ev = r == 0 ? EPOLLIN : EPOLLOUT;
    struct epoll_event e = {.events = c->ev, .data.ptr = c};
    if (epoll_ctl(c->th->epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        die(EXIT_RUNTIME, "epoll_ctl(ADD): %s", strerror(errno));
    if (r == 0) {
        conn_on_connected(c);
    } else {
        c->state = CS_CONNECTING;
        c->deadline_ns = now + g_timeout_ns;
    }
}

static void conn_finish_connect(conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        uint64_t now = now_ns();
        count_error(c, ERR_CONNECT, in_measure_window(now));
        conn_backoff(c, now);
        return;
    }
    ep_set(c, EPOLLIN);
    conn_on_connected(c);
}

/* Build (if needed) and send the next request on this connection. */
static void conn_next_request(conn_t *c)
{
    uint64_t now = now_ns();
    if (g_interrupted || now >= g_t_end) {
        conn_set_done(c);
        return;
    }
    int measured = now >= g_t_measure;
    if (measured && cfg.max_requests) {
        uint64_t k = __atomic_fetch_add(&g_issued, 1, __ATOMIC_RELAXED);
        if (k >= cfg.max_requests) {
            conn_set_done(c);
            return;
        }
    }
    uint64_t k = __atomic_fetch_add(&g_seq, 1, __ATOMIC_RELAXED);
    uint64_t seq = cfg.seq_start + k;
    size_t bi = cfg.nbodies ? (size_t)(k % cfg.nbodies) : 0;

    if (cfg.static_req[bi]) {
        c->out = cfg.static_req[bi];
        c->out_len = cfg.static_len[bi];
    } else {
        size_t nd = u64_digits(seq);
        const tmpl_t *b = cfg.nbodies ? &cfg.bodies[bi] : NULL;
        size_t blen = b ? tmpl_len(b, nd) : 0;
        size_t need = tmpl_len(&cfg.head, nd) + blen + 48;
        if (need > c->own_cap) {
            c->own_cap = need * 2;
            c->own_out = xrealloc(c->own_out, c->own_cap);
        }
        char *o = c->own_out;
        size_t n = tmpl_render(&cfg.head, o, seq, nd);
        if (cfg.has_body)
            n += (size_t)snprintf(o + n, c->own_cap - n, "Content-Length: %zu\r\n", blen);
        memcpy(o + n, "\r\n", 2);
        n += 2;
        if (b)
            n += tmpl_render(b, o + n, seq, nd);
        c->out = o;
        c->out_len = n;
    }
    c->out_off = 0;
    c->has_req = 1;
    c->measured = measured;
    c->retried = 0;
    parser_reset(c);
    c->start_ns = now_ns();
    c->deadline_ns = c->start_ns + g_timeout_ns;
    conn_send(c);
}

static void conn_send(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_set(c, EPOLLIN | EPOLLOUT);
            return;
        }
        if (conn_try_retry(c))
            return;
        conn_fail(c, ERR_WRITE);
        return;
    }
    ep_set(c, EPOLLIN);
}

/* --- response parsing --------------------------------------------------- */

static int token_in_list(const char *v, size_t vlen, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return 1;
    }
    return 0;
}

/* last transfer-coding in the list is "chunked" */
static int last_token_is(const char *v, size_t vlen, const char *tok)
{
    size_t e = vlen;
    while (e > 0 && (v[e - 1] == ' ' || v[e - 1] == '\t' || v[e - 1] == ','))
        e--;
    size_t s = e;
    while (s > 0 && v[s - 1] != ',')
        s--;
    while (s < e && (v[s] == ' ' || v[s] == '\t'))
        s++;
    size_t tl = strlen(tok);
    return e - s == tl && strncasecmp(v + s, tok, tl) == 0;
}

/*
 * Parse the header block in[start, end) (end points just past the blank line).
 * Returns 0 on success, -1 on a protocol error.  Sets status, keepalive and
 * the body framing state.
 */
static int parse_head(conn_t *c, const char *p, const char *end)
{
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol || eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0)
        return -1;
    if (p[7] != '0' && p[7] != '1')
        return -1;
    int minor = p[7] - '0';
    if (p[8] != ' ' || p[9] < '1' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' ||
        p[11] > '9')
        return -1;
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (c->status > 599)
        return -1;
    if (eol - p > 12 && p[12] != ' ' && p[12] != '\r')
        return -1;

    int conn_close = 0, conn_ka = 0, chunked = 0, has_te = 0, has_cl = 0;
    uint64_t cl = 0;
    p = eol + 1;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return -1;
        const char *le = eol;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p)
            break; /* blank line: end of headers */
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p)
            return -1;
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = le;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vlen = (size_t)(ve - v);
        if (nlen == 14 && strncasecmp(p, "content-length", 14) == 0) {
            if (vlen == 0)
                return -1;
            uint64_t x = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX - 9) / 10)
                    return -1;
                x = x * 10 + (uint64_t)(v[i] - '0');
            }
            if (has_cl && x != cl)
                return -1;
            has_cl = 1;
            cl = x;
        } else if (nlen == 17 && strncasecmp(p, "transfer-encoding", 17) == 0) {
            has_te = 1;
            chunked = last_token_is(v, vlen, "chunked");
        } else if (nlen == 10 && strncasecmp(p, "connection", 10) == 0) {
            if (token_in_list(v, vlen, "close"))
                conn_close = 1;
            if (token_in_list(v, vlen, "keep-alive"))
                conn_ka = 1;
        }
        p = eol + 1;
    }

    c->keepalive = conn_close ? 0 : (minor >= 1 ? 1 : conn_ka);
    if (c->status < 200) {
        if (c->status == 101)
            return -1; /* protocol switch is not supported */
        c->ps = P_HEAD; /* interim response: the real one follows */
        return 0;
    }
    if (cfg.is_head || c->status == 204 || c->status == 304) {
        c->ps = P_BODY_LEN;
        c->remaining = 0;
    } else if (has_te) {
        if (chunked) {
            c->ps = P_CHUNK_SIZE;
        } else {
            c->ps = P_BODY_EOF;
            c->keepalive = 0;
        }
    } else if (has_cl) {
        c->ps = P_BODY_LEN;
        c->remaining = cl;
    } else {
        c->ps = P_BODY_EOF; /* delimited by connection close */
        c->keepalive = 0;
    }
    return 0;
}

/* Returns 1 when a complete response has been consumed, 0 if more input is needed, -1 on error. */
static int parse_response(conn_t *c)
{
    for (;;) {
        char *buf = c->in;
        size_t avail = c->in_len - c->in_pos;
        switch (c->ps) {
        case P_HEAD: {
            size_t from = c->scan > c->in_pos + 3 ? c->scan - 3 : c->in_pos;
            char *hit = memmem(buf + from, c->in_len - from, "\r\n\r\n", 4);
            if (!hit) {
                c->scan = c->in_len;
                if (avail > MAX_HEADER_BYTES)
                    return -1;
                return 0;
            }
            char *hend = hit + 4;
            if (parse_head(c, buf + c->in_pos, hend) < 0)
                return -1;
            c->in_pos = (size_t)(hend - buf);
            c->scan = c->in_pos;
            if (c->ps == P_HEAD)
                continue; /* 1xx */
            if (c->ps == P_BODY_LEN && c->remaining == 0)
                return 1;
            continue;
        }
        case P_BODY_LEN:
        case P_CHUNK_DATA: {
            uint64_t take = avail < c->remaining ? avail : c->remaining;
            c->in_pos += (size_t)take;
            c->remaining -= take;
            if (c->remaining)
                return 0;
            if (c->ps == P_BODY_LEN)
                return 1;
            c->ps = P_CHUNK_CRLF;
            continue;
        }
        case P_CHUNK_CRLF:
            if (avail < 1)
                return 0;
            if (buf[c->in_pos] == '\n') {
                c->in_pos += 1;
            } else {
                if (avail < 2)
                    return 0;
                if (buf[c->in_pos] != '\r' || buf[c->in_pos + 1] != '\n')
                    return -1;
                c->in_pos += 2;
            }
            c->ps = P_CHUNK_SIZE;
            continue;
        case P_CHUNK_SIZE: {
            char *s = buf + c->in_pos;
            char *nl = memchr(s, '\n', avail);
            if (!nl)
                return avail > MAX_CHUNK_LINE ? -1 : 0;
            uint64_t size = 0;
            int ndig = 0;
            char *q = s;
            for (; q < nl; q++) {
                int d;
                if (*q >= '0' && *q <= '9')
                    d = *q - '0';
                else if (*q >= 'a' && *q <= 'f')
                    d = *q - 'a' + 10;
                else if (*q >= 'A' && *q <= 'F')
                    d = *q - 'A' + 10;
                else
                    break;
                if (size >> 59)
                    return -1;
                size = size * 16 + (uint64_t)d;
                ndig++;
            }
            if (!ndig || (q < nl && *q != ';' && *q != ' ' && *q != '\t' && *q != '\r'))
                return -1;
            c->in_pos = (size_t)(nl + 1 - buf);
            if (size == 0) {
                c->ps = P_TRAILER;
            } else {
                c->ps = P_CHUNK_DATA;
                c->remaining = size;
            }
            continue;
        }
        case P_TRAILER: {
            char *s = buf + c->in_pos;
            char *nl = memchr(s, '\n', avail);
            if (!nl)
                return avail > MAX_HEADER_BYTES ? -1 : 0;
            int blank = nl == s || (nl == s + 1 && s[0] == '\r');
            c->in_pos = (size_t)(nl + 1 - buf);
            if (blank)
                return 1;
            continue;
        }
        case P_BODY_EOF:
            c->in_pos = c->in_len;
            return 0;
        }
    }
}

static void record_response(conn_t *c, uint64_t t_done)
{
    stats_t *st = &c->th->st;
    if (!c->measured || t_done >= g_t_end)
        return;
    if (st->nlat == st->caplat) {
        st->caplat = st->caplat ? st->caplat * 2 : 65536;
        st->lat = xrealloc(st->lat, st->caplat * sizeof *st->lat);
    }
    st->lat[st->nlat++] = t_done - c->start_ns;
    st->status[c->status]++;
}

/* A full response has been read. */
static void conn_complete(conn_t *c)
{
    uint64_t t = now_ns();
    record_response(c, t);
    c->has_req = 0;
    c->reqs_on_conn++;
    if (c->in_pos != c->in_len) {
        /* bytes after the response although we never pipeline: framing is off */
        count_error(c, ERR_PROTOCOL, c->measured);
        conn_reconnect(c);
        return;
    }
    c->in_pos = c->in_len = 0;
    if (!c->keepalive || c->out_off < c->out_len) {
        conn_reconnect(c);
        return;
    }
    conn_next_request(c);
}

static void conn_on_readable(conn_t *c)
{
    for (;;) {
        if (c->in_pos == c->in_len) {
            c->in_pos = c->in_len = c->scan = 0;
        } else if (c->in_len == c->in_cap) {
            if (c->in_pos > 0) {
                size_t keep = c->in_len - c->in_pos;
                memmove(c->in, c->in + c->in_pos, keep);
                c->scan = c->scan > c->in_pos ? c->scan - c->in_pos : 0;
                c->in_len = keep;
                c->in_pos = 0;
            } else {
                c->in_cap *= 2;
                c->in = xrealloc(c->in, c->in_cap);
            }
        }
        size_t space = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, space, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (conn_try_retry(c))
                return;
            conn_fail(c, ERR_READ);
            return;
        }
        if (n == 0) { /* EOF */
            if (c->has_req && c->ps == P_BODY_EOF) {
                conn_complete(c); /* keepalive is 0: reconnects */
                return;
            }
            if (!c->has_req) { /* closed while idle (should not happen) */
                conn_reconnect(c);
                return;
            }
            if (conn_try_retry(c))
                return;
            conn_fail(c, ERR_READ);
            return;
        }
        if (!c->has_req) {
            /* unsolicited data: nothing is in flight */
            conn_fail(c, ERR_PROTOCOL);
            return;
        }
        c->got_bytes = 1;
        c->in_len += (size_t)n;
        int r = parse_response(c);
        if (r < 0) {
            conn_fail(c, ERR_PROTOCOL);
            return;
        }
        if (r > 0) {
            conn_complete(c);
            return;
        }
        if ((size_t)n < space)
            return; /* socket most likely drained; level-triggered epoll will tell us */
    }
}

static void conn_on_event(conn_t *c, uint32_t ev)
{
    switch (c->state) {
    case CS_CONNECTING:
        conn_finish_connect(c);
        return;
    case CS_ACTIVE:
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            uint32_t gen = c->gen;
            conn_on_readable(c);
            if (c->state != CS_ACTIVE || c->gen != gen)
                return; /* the events were for a socket that is gone now */
        }
        if ((ev & EPOLLOUT) && c->has_req && c->out_off < c->out_len)
            conn_send(c);
        return;
    default:
        return;
    }
}

/* timeouts, connect back-off */
static void sweep(thread_t *th, uint64_t now)
{
    for (int i = 0; i < th->nconns; i++) {
        conn_t *c = &th->conns[i];
        switch (c->state) {
        case CS_BACKOFF:
            if (now >= c->backoff_until)
                conn_connect(c);
            break;
        case CS_CONNECTING:
            if (now >= c->deadline_ns) {
                count_error(c, ERR_CONNECT, in_measure_window(now));
                conn_backoff(c, now);
            }
            break;
        case CS_ACTIVE:
            if (c->has_req && now >= c->deadline_ns)
                conn_fail(c, ERR_TIMEOUT);
            break;
        case CS_DONE:
            break;
        }
    }
}

static void *thread_main(void *arg)
{
    thread_t *th = arg;
    th->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (th->epfd < 0)
        die(EXIT_RUNTIME, "epoll_create1: %s", strerror(errno));
    th->live = th->nconns;
    for (int i = 0; i < th->nconns; i++) {
        conn_t *c = &th->conns[i];
        c->th = th;
        c->fd = -1;
        c->in_cap = IN_BUF_INIT;
        c->in = xmalloc(c->in_cap);
        conn_connect(c);
    }

    struct epoll_event evs[MAX_EVENTS];
    uint64_t next_sweep = now_ns() + CONNECT_BACKOFF_NS;
    for (;;) {
        uint64_t now = now_ns();
        if (th->live == 0 || g_interrupted || now >= g_t_end)
            break;
        uint64_t wait_ns = next_sweep > now ? next_sweep - now : 0;
        if (g_t_end - now < wait_ns)
            wait_ns = g_t_end - now;
        int timeout_ms = (int)((wait_ns + 999999) / 1000000);
        int n = epoll_wait(th->epfd, evs, MAX_EVENTS, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die(EXIT_RUNTIME, "epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++)
            conn_on_event(evs[i].data.ptr, evs[i].events);
        now = now_ns();
        if (now >= next_sweep) {
            sweep(th, now);
            next_sweep = now + CONNECT_BACKOFF_NS;
        }
    }
    uint64_t t = now_ns();
    th->t_exit = t < g_t_end ? t : g_t_end;

    for (int i = 0; i < th->nconns; i++) {
        conn_t *c = &th->conns[i];
        conn_close_fd(c);
        free(c->in);
        free(c->own_out);
        c->in = c->own_out = NULL;
    }
    close(th->epfd);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* start-up probe, results                                                   */

static void probe_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die(EXIT_RUNTIME, "socket: %s", strerror(errno));
    int err = 0;
    if (connect(fd, (const struct sockaddr *)&cfg.addr, sizeof cfg.addr) < 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int timeout_ms = g_timeout_ns / 1000000 > 5000 ? 5000 : (int)(g_timeout_ns / 1000000);
            int r;
            do
                r = poll(&pfd, 1, timeout_ms);
            while (r < 0 && errno == EINTR);
            if (r == 0) {
                err = ETIMEDOUT;
            } else {
                socklen_t len = sizeof err;
                err = 0;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                    err = errno;
            }
        }
    }
    close(fd);
    if (err)
        die(EXIT_RUNTIME, "cannot connect to %s:%d (%s): %s", cfg.host, cfg.port, cfg.url,
            strerror(err));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile, permille: 500 = p50, 999 = p99.9 */
static double pct_ms(const uint64_t *v, size_t n, unsigned permille)
{
    if (n == 0)
        return 0.0;
    size_t rank = (size_t)(((unsigned long long)n * permille + 999) / 1000);
    if (rank < 1)
        rank = 1;
    return (double)v[rank - 1] / 1e6;
}

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static double parse_seconds(const char *s, const char *flag)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || v < 0 || v > 1e7)
        die(EXIT_USAGE, "invalid value '%s' for %s (seconds, >= 0)", s, flag);
    return v;
}

static uint64_t parse_uint(const char *s, const char *flag, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        die(EXIT_USAGE, "invalid value '%s' for %s", s, flag);
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v < min || v > max)
        die(EXIT_USAGE, "invalid value '%s' for %s (expected %" PRIu64 "..%" PRIu64 ")", s, flag,
            min, max);
    return v;
}

static void usage(FILE *f)
{
    fputs("usage: loadgen [-c CONNS] [-d SECONDS | -n REQUESTS] [-w SECONDS] [-t THREADS]\n"
          "               [-H 'Name: value']... [-m METHOD] [--bodies FILE] [--timeout SECONDS]\n"
          "               [--seq-start N] [--json] http://HOST:PORT/PATH\n"
          "\n"
          "  -c, --connections N  concurrent keep-alive connections, closed loop (default 1)\n"
          "  -d, --duration S     measured seconds (default 10 unless -n is given)\n"
          "  -w, --warmup S       warm-up seconds before measuring (default 0)\n"
          "  -n, --requests N     stop after N measured requests\n"
          "  -t, --threads N      threads, each driving its share of connections (default 1)\n"
          "  -H, --header H       extra request header, repeatable; may contain {{SEQ}}\n"
          "  -m, --method M       request method (default GET, or POST with --bodies)\n"
          "      --bodies FILE    JSON-lines file of request bodies, rotated across requests;\n"
          "                       {{SEQ}} is replaced by a unique increasing request number\n"
          "      --timeout S      per-request timeout (default 10)\n"
          "      --seq-start N    first {{SEQ}} value (default 1)\n"
          "      --json           print one JSON object on stdout instead of the summary\n",
          f);
}

int main(int argc, char **argv)
{
    cfg.connections = 1;
    cfg.threads = 1;
    cfg.duration_s = -1;
    cfg.warmup_s = 0;
    cfg.timeout_s = 10;
    cfg.seq_start = 1;
    cfg.method = NULL;

    enum { OPT_BODIES = 1000, OPT_JSON, OPT_TIMEOUT, OPT_SEQ_START };
    static const struct option longopts[] = {
        {"connections", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"requests", required_argument, NULL, 'n'},
        {"threads", required_argument, NULL, 't'},
        {"header", required_argument, NULL, 'H'},
        {"method", required_argument, NULL, 'm'},
        {"bodies", required_argument, NULL, OPT_BODIES},
        {"json", no_argument, NULL, OPT_JSON},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"seq-start", required_argument, NULL, OPT_SEQ_START},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cfg.headers = xmalloc((size_t)argc * sizeof *cfg.headers);
    int opt;
    while ((opt = getopt_long(argc, argv, "c:d:w:n:t:H:m:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cfg.connections = (int)parse_uint(optarg, "-c", 1, 100000);
            break;
        case 'd':
            cfg.duration_s = parse_seconds(optarg, "-d");
            if (cfg.duration_s <= 0)
                die(EXIT_USAGE, "-d must be > 0");
            break;
        case 'w':
            cfg.warmup_s = parse_seconds(optarg, "-w");
            break;
        case 'n':
            cfg.max_requests = parse_uint(optarg, "-n", 1, UINT64_MAX / 2);
            break;
        case 't':
            cfg.threads = (int)parse_uint(optarg, "-t", 1, 256);
            break;
        case 'H':
            cfg.headers[cfg.nheaders++] = optarg;
            break;
        case 'm':
            cfg.method = optarg;
            break;
        case OPT_BODIES:
            cfg.bodies_path = optarg;
            break;
        case OPT_JSON:
            cfg.json = 1;
            break;
        case OPT_TIMEOUT:
            cfg.timeout_s = parse_seconds(optarg, "--timeout");
            if (cfg.timeout_s <= 0)
                die(EXIT_USAGE, "--timeout must be > 0");
            break;
        case OPT_SEQ_START:
            cfg.seq_start = parse_uint(optarg, "--seq-start", 0, UINT64_MAX / 2);
            break;
        case 'h':
            usage(stdout);
            free(cfg.headers);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        die(EXIT_USAGE, optind >= argc ? "missing URL" : "exactly one URL expected");
    }
    cfg.url = argv[optind];
    parse_url(cfg.url);
    if (!cfg.method)
        cfg.method = cfg.bodies_path ? "POST" : "GET";
    if (!*cfg.method)
        die(EXIT_USAGE, "empty method");
    for (const char *q = cfg.method; *q; q++)
        if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || *q == '-' || *q == '_'))
            die(EXIT_USAGE, "invalid method '%s'", cfg.method);
    cfg.is_head = strcasecmp(cfg.method, "HEAD") == 0;
    if (cfg.bodies_path)
        load_bodies(cfg.bodies_path);
    if (cfg.duration_s < 0 && !cfg.max_requests)
        cfg.duration_s = 10;
    if (cfg.threads > cfg.connections)
        cfg.threads = cfg.connections;
    build_requests();

    /* enough file descriptors for all connections */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t need = (rlim_t)cfg.connections + 32;
        if (rl.rlim_cur < need) {
            rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
            setrlimit(RLIMIT_NOFILE, &rl);
            if (rl.rlim_cur < need)
                die(EXIT_USAGE, "-c %d needs %llu file descriptors, limit is %llu",
                    cfg.connections, (unsigned long long)need, (unsigned long long)rl.rlim_cur);
        }
    }

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    g_timeout_ns = (uint64_t)(cfg.timeout_s * 1e9);
    probe_server();

    g_t_start = now_ns();
    g_t_measure = g_t_start + (uint64_t)(cfg.warmup_s * 1e9);
    g_t_end = cfg.duration_s > 0 ? g_t_measure + (uint64_t)(cfg.duration_s * 1e9) : UINT64_MAX;

    thread_t *ths = xmalloc((size_t)cfg.threads * sizeof *ths);
    conn_t *conns = calloc((size_t)cfg.connections, sizeof *conns);
    if (!conns)
        die(EXIT_RUNTIME, "out of memory");
    int base = 0;
    for (int i = 0; i < cfg.threads; i++) {
        memset(&ths[i], 0, sizeof ths[i]);
        ths[i].idx = i;
        ths[i].nconns = cfg.connections / cfg.threads + (i < cfg.connections % cfg.threads);
        ths[i].conns = conns + base;
        base += ths[i].nconns;
    }
    if (cfg.threads == 1) {
        thread_main(&ths[0]);
    } else {
        for (int i = 0; i < cfg.threads; i++) {
            int e = pthread_create(&ths[i].tid, NULL, thread_main, &ths[i]);
            if (e)
                die(EXIT_RUNTIME, "pthread_create: %s", strerror(e));
        }
        for (int i = 0; i < cfg.threads; i++)
            pthread_join(ths[i].tid, NULL);
    }

    /* merge */
    stats_t tot;
    memset(&tot, 0, sizeof tot);
    uint64_t t_last = g_t_measure;
    for (int i = 0; i < cfg.threads; i++)
        tot.nlat += ths[i].st.nlat;
    tot.lat = xmalloc(tot.nlat * sizeof *tot.lat);
    size_t off = 0;
    for (int i = 0; i < cfg.threads; i++) {
        stats_t *s = &ths[i].st;
        if (s->nlat)
            memcpy(tot.lat + off, s->lat, s->nlat * sizeof *s->lat);
        off += s->nlat;
        for (int k = 0; k < 600; k++)
            tot.status[k] += s->status[k];
        for (int k = 0; k < ERR_KINDS; k++)
            tot.errors[k] += s->errors[k];
        tot.reconnects += s->reconnects;
        tot.abandoned += s->abandoned;
        if (ths[i].t_exit > t_last)
            t_last = ths[i].t_exit;
        free(s->lat);
    }
    free(conns);
    free(ths);
    qsort(tot.lat, tot.nlat, sizeof *tot.lat, cmp_u64);

    double seconds = (double)(t_last - g_t_measure) / 1e9;
    uint64_t errors = 0;
    for (int k = 0; k < ERR_KINDS; k++)
        errors += tot.errors[k];
    size_t n = tot.nlat;
    double rps = seconds > 0 ? (double)n / seconds : 0.0;
    double p50 = pct_ms(tot.lat, n, 500), p90 = pct_ms(tot.lat, n, 900);
    double p99 = pct_ms(tot.lat, n, 990), p999 = pct_ms(tot.lat, n, 999);
    double pmax = n ? (double)tot.lat[n - 1] / 1e6 : 0.0;

    if (cfg.json) {
        printf("{\"requests\": %zu, \"seconds\": %.6f, \"rps\": %.3f, ", n, seconds, rps);
        if (n)
            printf("\"p50_ms\": %.6f, \"p90_ms\": %.6f, \"p99_ms\": %.6f, \"p999_ms\": %.6f, "
                   "\"max_ms\": %.6f, ",
                   p50, p90, p99, p999, pmax);
        else
            printf("\"p50_ms\": null, \"p90_ms\": null, \"p99_ms\": null, \"p999_ms\": null, "
                   "\"max_ms\": null, ");
        printf("\"status\": {");
        int first = 1;
        for (int k = 100; k < 600; k++) {
            if (!tot.status[k])
                continue;
            printf("%s\"%d\": %" PRIu64, first ? "" : ", ", k, tot.status[k]);
            first = 0;
        }
        printf("}, \"errors\": %" PRIu64 ", \"reconnects\": %" PRIu64 ", \"concurrency\": %d}\n",
               errors, tot.reconnects, cfg.connections);
    } else {
        printf("loadgen %s %s: %d connection%s, %d thread%s", cfg.method, cfg.url,
               cfg.connections, cfg.connections == 1 ? "" : "s", cfg.threads,
               cfg.threads == 1 ? "" : "s");
        if (cfg.warmup_s > 0)
            printf(", warm-up %.2fs", cfg.warmup_s);
        if (cfg.bodies_path)
            printf(", %zu bodies", cfg.nbodies);
        printf("%s\n", g_interrupted ? " (interrupted)" : "");
        printf("  requests     %zu\n", n);
        printf("  seconds      %.3f\n", seconds);
        printf("  req/s        %.1f\n", rps);
        printf("  latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", p50, p90,
               p99, p999, pmax);
        uint64_t cls[6] = {0};
        for (int k = 100; k < 600; k++)
            cls[k / 100] += tot.status[k];
        printf("  status       1xx %" PRIu64 "  2xx %" PRIu64 "  3xx %" PRIu64 "  4xx %" PRIu64
               "  5xx %" PRIu64 "\n",
               cls[1], cls[2], cls[3], cls[4], cls[5]);
        printf("  codes       ");
        for (int k = 100; k < 600; k++)
            if (tot.status[k])
                printf(" %d:%" PRIu64, k, tot.status[k]);
        printf("%s\n", n ? "" : " -");
        printf("  errors       %" PRIu64, errors);
        if (errors) {
            printf(" (");
            int first = 1;
            for (int k = 0; k < ERR_KINDS; k++) {
                if (!tot.errors[k])
                    continue;
                printf("%s%s %" PRIu64, first ? "" : ", ", err_names[k], tot.errors[k]);
                first = 0;
            }
            printf(")");
        }
        printf("\n  reconnects   %" PRIu64 "\n", tot.reconnects);
    }
    fflush(stdout);
    uint64_t abandoned = tot.abandoned;
    if (abandoned)
        fprintf(stderr, "loadgen: %" PRIu64 " connection(s) gave up: server unreachable\n",
                abandoned);
    free(tot.lat);
    free_config();
    if (n == 0) {
        fprintf(stderr, "loadgen: no request completed in the measured window\n");
        return EXIT_RUNTIME;
    }
    return abandoned ? EXIT_RUNTIME : 0;
}
