/*
 * kernel_hold.c - minimal C baseline for the tcpmax benchmarks.
 *
 * Measures the kernel's own connect+accept rate on loopback with as little
 * user-space work as possible, and holds every connection open, so that
 * tcpmax's ramp can be compared with it side by side.
 *
 *   cc -O2 -Wall -Wextra -pthread -o kernel_hold benches/c/kernel_hold.c
 *   kernel_hold COUNT [--hold SECONDS] [--deadline SECONDS] [--watch]
 *
 * --watch registers every accepted socket in the server thread's epoll
 * (EPOLLIN | EPOLLRDHUP, edge-triggered), as any server must to notice its
 * peers; without it the server only accepts.
 *
 * RLIMIT_NOFILE is checked against each fd table separately, so every server
 * and client thread calls unshare(CLONE_FILES) and gets its own table (and its
 * own RLIMIT_NOFILE budget).  Traffic goes only to 127.0.0.0/8.
 *
 * Server side: S threads, each with its own SO_REUSEPORT listener on one
 * port (reserved by main with a bound, non-listening socket), edge-triggered
 * epoll, accept4() until EAGAIN, accepted fds kept open and never read.
 * Client side: C threads; connection i goes to thread i % C and uses source
 * address 127.1.(j/250).(j%250+1), j = i % NSRC, NSRC = ceil(COUNT/10000),
 * with IP_BIND_ADDRESS_NO_PORT, non-blocking connect, at most 512 in flight
 * per thread, completion via EPOLLOUT|EPOLLET + SO_ERROR.
 *
 * Output: one JSON object on stdout; progress once a second on stderr.
 * Every loop is bounded: the ramp stops at --deadline (default 300 s) and the
 * partial result is printed with "timed_out":true and exit status 3; an
 * alarm() kills the process if teardown somehow hangs.  Fatal errors: exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PER_TABLE 19900L        /* connections per thread (fd table) */
#define HEADROOM 64             /* descriptors kept free in every table */
#define PER_PAIR 10000L         /* connections per (source, destination) */
#define MAX_INFLIGHT 512        /* connects in flight per client thread */
#define POLL_MS 10              /* main thread counter sampling period */
#define MAX_ERRNO 256

/* ------------------------------------------------------------------ */

static void die(const char *call, int err)
{
    fprintf(stderr, "kernel_hold: fatal: %s failed: %s (%s, errno %d)\n",
            call, strerror(err), strerrorname_np(err) ? strerrorname_np(err) : "?", err);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime", errno);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
        if (errno != EINTR)
            die("nanosleep", errno);
    }
}

/* ------------------------------------------------------------------ */

struct counters {
    _Atomic uint64_t established;   /* client: connect completed OK */
    _Atomic uint64_t failed;        /* client: connect failed */
    _Atomic uint64_t accepted;      /* server: accept4 returned an fd */
    _Atomic int ready;              /* server: listening; client: ramp done */
    _Atomic int full;               /* server: hit its fd budget */
    uint64_t errors[MAX_ERRNO];     /* read by main only after join */
} __attribute__((aligned(64)));

struct thread_arg {
    pthread_t tid;
    int index;
    struct counters c __attribute__((aligned(64)));
};

static long g_count;            /* COUNT */
static int g_nservers, g_nclients, g_nsrc;
static uint16_t g_port;         /* network byte order */
static int g_backlog;
static long g_fd_budget;        /* usable descriptors per table */
static double g_deadline;       /* absolute CLOCK_MONOTONIC deadline of the ramp */
static _Atomic int g_stop;      /* teardown requested */
static int g_watch;             /* --watch: register accepted fds in epoll */
static _Atomic int g_listening; /* number of server threads listening */
static _Atomic int g_clients_done;

static void count_err(struct counters *c, int err)
{
    c->errors[(err > 0 && err < MAX_ERRNO) ? err : 0]++;
}

static void own_fd_table(void)
{
    if (unshare(CLONE_FILES) != 0)
        die("unshare(CLONE_FILES)", errno);
    /* Drop inherited copies of main's descriptors (the port reservation
     * socket etc.); keep 0-2 for diagnostics. */
    if (close_range(3, ~0U, 0) != 0)
        die("close_range", errno);
}

static void close_rst(int fd)
{
    struct linger lg = { 1, 0 };
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
        die("setsockopt(SO_LINGER)", errno);
    if (close(fd) != 0)
        die("close", errno);
}

/* ------------------------------------------------------------------ */

static void *server_main(void *p)
{
    struct thread_arg *a = p;
    struct counters *c = &a->c;
    int one = 1;

    own_fd_table();

    int *fds = malloc(sizeof(int) * (size_t)g_fd_budget);
    if (!fds)
        die("malloc", ENOMEM);
    long nfds = 0;

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls < 0)
        die("socket(listener)", errno);
    if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        die("setsockopt(SO_REUSEADDR)", errno);
    if (setsockopt(ls, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        die("setsockopt(SO_REUSEPORT)", errno);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = g_port,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("bind(listener)", errno);
    if (listen(ls, g_backlog) != 0)
        die("listen", errno);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1", errno);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.fd = ls };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) != 0)
        die("epoll_ctl(ADD listener)", errno);

    atomic_fetch_add(&g_listening, 1);

    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        struct epoll_event evs[4];
        int n = epoll_wait(ep, evs, 4, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait(server)", errno);
        }
        if (n == 0 || atomic_load_explicit(&c->full, memory_order_relaxed))
            continue;
        /* Drain the accept queue (edge-triggered).  Bounded by the fd budget. */
        while (nfds < g_fd_budget) {
            int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    count_err(c, errno);
                    atomic_store(&c->full, 1);
                    break;
                }
                die("accept4", errno);
            }
            if (g_watch) {
                /* As any server must, to notice data or a peer going away. */
                struct epoll_event cev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd };
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0)
                    die("epoll_ctl(ADD accepted)", errno);
            }
            fds[nfds++] = fd;
            atomic_fetch_add_explicit(&c->accepted, 1, memory_order_relaxed);
        }
        if (nfds >= g_fd_budget)
            atomic_store(&c->full, 1);
    }

    /* Teardown: RST every accepted socket (no FIN_WAIT/TIME_WAIT left). */
    for (long k = 0; k < nfds; k++)
        close_rst(fds[k]);
    if (close(ep) != 0)
        die("close(epoll)", errno);
    if (close(ls) != 0)
        die("close(listener)", errno);
    free(fds);
    return NULL;
}

/* ------------------------------------------------------------------ */

static void *client_main(void *p)
{
    struct thread_arg *a = p;
    struct counters *c = &a->c;
    int one = 1;

    own_fd_table();

    /* This thread handles connections i = index, index + C, ... < COUNT. */
    long mine = (g_count - a->index + g_nclients - 1) / g_nclients;
    int *fds = malloc(sizeof(int) * (size_t)(mine > 0 ? mine : 1));
    if (!fds)
        die("malloc", ENOMEM);
    long nfds = 0;          /* slots used in fds[]; closed ones are -1 */

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1", errno);

    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = g_port,
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    long next = a->index;
    int inflight = 0;
    struct epoll_event evs[MAX_INFLIGHT];

    for (;;) {
        if (atomic_load_explicit(&g_stop, memory_order_relaxed) || now_s() > g_deadline)
            break;
        while (inflight < MAX_INFLIGHT && next < g_count) {
            long i = next;
            next += g_nclients;
            long j = i % g_nsrc;
            struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = 0,
                .sin_addr.s_addr = htonl((127u << 24) | (1u << 16) |
                                         ((uint32_t)(j / 250) << 8) | (uint32_t)(j % 250 + 1)) };
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    count_err(c, errno);
                    atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
                    continue;
                }
                die("socket(client)", errno);
            }
            if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0)
                die("setsockopt(IP_BIND_ADDRESS_NO_PORT)", errno);
            if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0)
                die("bind(client source)", errno);
            long slot = nfds++;
            fds[slot] = fd;
            if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0) {
                atomic_fetch_add_explicit(&c->established, 1, memory_order_relaxed);
                continue;
            }
            if (errno != EINPROGRESS) {
                count_err(c, errno);
                atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
                if (close(fd) != 0)
                    die("close", errno);
                fds[slot] = -1;
                continue;
            }
            struct epoll_event ev = { .events = EPOLLOUT | EPOLLET,
                                      .data.u64 = ((uint64_t)(uint32_t)fd << 32) | (uint64_t)slot };
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
                die("epoll_ctl(ADD client)", errno);
            inflight++;
        }
        if (inflight == 0 && next >= g_count)
            break;
        int n = epoll_wait(ep, evs, MAX_INFLIGHT, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait(client)", errno);
        }
        for (int e = 0; e < n; e++) {
            int fd = (int)(evs[e].data.u64 >> 32);
            long slot = (long)(evs[e].data.u64 & 0xffffffffu);
            if (fds[slot] != fd)        /* stale event for an fd already handled */
                continue;
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                die("getsockopt(SO_ERROR)", errno);
            if (err == 0) {
                /* EPOLLET with no data traffic: no further events; leave it
                 * registered (closing the fd removes it). Mark as resolved. */
                fds[slot] = fd | INT_MIN;   /* resolved-established marker */
                atomic_fetch_add_explicit(&c->established, 1, memory_order_relaxed);
            } else {
                count_err(c, err);
                atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
                if (close(fd) != 0)
                    die("close", errno);
                fds[slot] = -1;
            }
            inflight--;
        }
    }

    atomic_store(&c->ready, 1);
    atomic_fetch_add(&g_clients_done, 1);

    /* Hold until told to stop (bounded by main's deadline + hold). */
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed))
        sleep_ms(10);

    /* Teardown: RST every socket still open (established or in flight). */
    for (long k = 0; k < nfds; k++) {
        if (fds[k] == -1)
            continue;
        close_rst(fds[k] & INT_MAX);
    }
    if (close(ep) != 0)
        die("close(epoll)", errno);
    free(fds);
    return NULL;
}

/* ------------------------------------------------------------------ */

static void sum(struct thread_arg *t, int n, uint64_t *est, uint64_t *fail, uint64_t *acc)
{
    uint64_t e = 0, f = 0, ac = 0;
    for (int k = 0; k < n; k++) {
        e += atomic_load_explicit(&t[k].c.established, memory_order_relaxed);
        f += atomic_load_explicit(&t[k].c.failed, memory_order_relaxed);
        ac += atomic_load_explicit(&t[k].c.accepted, memory_order_relaxed);
    }
    if (est) *est = e;
    if (fail) *fail = f;
    if (acc) *acc = ac;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static void usage(void)
{
    fprintf(stderr, "usage: kernel_hold COUNT [--hold SECONDS] [--deadline SECONDS] [--watch]\n");
    exit(2);
}

static double parse_num(const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    double hold = 0, deadline = 300;
    if (argc < 2)
        usage();
    g_count = (long)parse_num(argv[1], 1, 50e6);
    for (int k = 2; k < argc; k++) {
        if (!strcmp(argv[k], "--hold") && k + 1 < argc)
            hold = parse_num(argv[++k], 0, 86400);
        else if (!strcmp(argv[k], "--deadline") && k + 1 < argc)
            deadline = parse_num(argv[++k], 1, 86400);
        else if (!strcmp(argv[k], "--watch"))
            g_watch = 1;
        else
            usage();
    }
    /* Last-resort watchdog: the default SIGALRM action kills the process. */
    alarm((unsigned)(deadline + hold + 300));

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("getrlimit(RLIMIT_NOFILE)", errno);
    if (rl.rlim_cur < rl.rlim_max) {        /* raise soft limit to hard if we can */
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            die("setrlimit(RLIMIT_NOFILE)", errno);
    }
    long limit = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (long)rl.rlim_cur;
    g_fd_budget = limit - HEADROOM;
    if (g_fd_budget < 256) {
        fprintf(stderr, "kernel_hold: RLIMIT_NOFILE %ld is too small\n", limit);
        return 1;
    }
    long per = PER_TABLE < g_fd_budget ? PER_TABLE : g_fd_budget;

    /* Clients: exactly ceil(COUNT/per) tables, each <= per sockets. */
    g_nclients = (int)((g_count + per - 1) / per);
    if (g_nclients < 2)
        g_nclients = 2;
    /* Servers: SO_REUSEPORT spreads connections by a flow hash, not evenly;
     * the busiest listener gets about mean + 2.5*sqrt(mean).  With a mean of
     * 19,900 that overflows a 19,936-descriptor table, so size the server
     * side for a mean of at most 90% of the budget (17,942 at a 20,000 cap). */
    long sper = (long)(0.9 * (double)g_fd_budget);
    if (sper > PER_TABLE)
        sper = PER_TABLE;
    g_nservers = (int)((g_count + sper - 1) / sper);
    if (g_nservers < 2)
        g_nservers = 2;
    g_nsrc = (int)((g_count + PER_PAIR - 1) / PER_PAIR);
    if (g_nsrc > 250 * 255) {
        fprintf(stderr, "kernel_hold: COUNT too large for 127.1.0.0/16 sources\n");
        return 1;
    }

    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    if (!f)
        die("fopen(/proc/sys/net/core/somaxconn)", errno);
    if (fscanf(f, "%d", &g_backlog) != 1)
        die("fscanf(somaxconn)", EINVAL);
    fclose(f);

    /* Reserve a port: bound, SO_REUSEPORT, never listening. */
    int one = 1;
    int rs = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rs < 0)
        die("socket(reserve)", errno);
    if (setsockopt(rs, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        die("setsockopt(SO_REUSEADDR)", errno);
    if (setsockopt(rs, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        die("setsockopt(SO_REUSEPORT)", errno);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(rs, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("bind(reserve)", errno);
    socklen_t sl = sizeof sa;
    if (getsockname(rs, (struct sockaddr *)&sa, &sl) != 0)
        die("getsockname", errno);
    g_port = sa.sin_port;

    struct thread_arg *srv = aligned_alloc(64, sizeof *srv * (size_t)g_nservers);
    struct thread_arg *cli = aligned_alloc(64, sizeof *cli * (size_t)g_nclients);
    if (!srv || !cli)
        die("aligned_alloc", ENOMEM);
    memset(srv, 0, sizeof *srv * (size_t)g_nservers);
    memset(cli, 0, sizeof *cli * (size_t)g_nclients);

    pthread_attr_t attr;
    int rc;
    if ((rc = pthread_attr_init(&attr)) != 0)
        die("pthread_attr_init", rc);
    if ((rc = pthread_attr_setstacksize(&attr, 256 * 1024)) != 0)
        die("pthread_attr_setstacksize", rc);

    double t_start = now_s();
    g_deadline = t_start + deadline;

    for (int k = 0; k < g_nservers; k++) {
        srv[k].index = k;
        if ((rc = pthread_create(&srv[k].tid, &attr, server_main, &srv[k])) != 0)
            die("pthread_create(server)", rc);
    }
    while (atomic_load(&g_listening) < g_nservers) {
        if (now_s() > g_deadline) {
            fprintf(stderr, "kernel_hold: servers did not start listening before the deadline\n");
            return 1;
        }
        sleep_ms(1);
    }

    struct rusage ru0, ru1;
    if (getrusage(RUSAGE_SELF, &ru0) != 0)
        die("getrusage", errno);
    double t0 = now_s();
    for (int k = 0; k < g_nclients; k++) {
        cli[k].index = k;
        if ((rc = pthread_create(&cli[k].tid, &attr, client_main, &cli[k])) != 0)
            die("pthread_create(client)", rc);
    }

    double t_est = -1, t_acc = -1, next_report = t0 + 1;
    uint64_t est = 0, fail = 0, acc = 0, last_acc = 0, acc_ramp = 0;
    double last_t = t0;
    int timed_out = 0;
    for (;;) {
        sleep_ms(POLL_MS);
        double t = now_s();
        uint64_t a2;
        sum(cli, g_nclients, &est, &fail, NULL);
        sum(srv, g_nservers, NULL, NULL, &a2);
        acc = a2;
        int clients_done = atomic_load(&g_clients_done) == g_nclients;
        if (t_est < 0 && (est >= (uint64_t)g_count || clients_done))
            t_est = t;
        if (t_acc < 0 && (acc >= (uint64_t)g_count || (clients_done && acc >= est))) {
            t_acc = t;
            acc_ramp = acc;
            if (getrusage(RUSAGE_SELF, &ru1) != 0)
                die("getrusage", errno);
        }
        int finished = t_est >= 0 && t_acc >= 0;
        if (t >= next_report || finished) {
            fprintf(stderr, "[%6.1fs] established %llu accepted %llu failed %llu rate %.0f/s\n",
                    t - t0, (unsigned long long)est, (unsigned long long)acc,
                    (unsigned long long)fail, (double)(acc - last_acc) / (t - last_t));
            last_acc = acc;
            last_t = t;
            next_report += 1;
        }
        if (finished)
            break;
        if (t > g_deadline) {
            timed_out = 1;
            fprintf(stderr, "kernel_hold: deadline of %.0f s reached; reporting partial results\n",
                    deadline);
            if (t_est < 0)
                t_est = t;
            if (t_acc < 0) {
                t_acc = t;
                acc_ramp = acc;
                if (getrusage(RUSAGE_SELF, &ru1) != 0)
                    die("getrusage", errno);
            }
            break;
        }
    }

    if (hold > 0) {
        fprintf(stderr, "kernel_hold: holding for %.1f s\n", hold);
        sleep_ms((long)(hold * 1000));
    }

    /* Teardown. */
    double td0 = now_s();
    atomic_store(&g_stop, 1);
    for (int k = 0; k < g_nclients; k++)
        if ((rc = pthread_join(cli[k].tid, NULL)) != 0)
            die("pthread_join(client)", rc);
    for (int k = 0; k < g_nservers; k++)
        if ((rc = pthread_join(srv[k].tid, NULL)) != 0)
            die("pthread_join(server)", rc);
    double td1 = now_s();
    if (close(rs) != 0)
        die("close(reserve)", errno);

    sum(cli, g_nclients, &est, &fail, NULL);
    sum(srv, g_nservers, NULL, NULL, &acc);
    fprintf(stderr, "kernel_hold: teardown %.2f s\n", td1 - td0);

    /* Merge error counts. */
    uint64_t errs[MAX_ERRNO] = { 0 };
    int full_servers = 0;
    uint64_t max_per_server = 0;
    for (int k = 0; k < g_nclients; k++)
        for (int e = 0; e < MAX_ERRNO; e++)
            errs[e] += cli[k].c.errors[e];
    for (int k = 0; k < g_nservers; k++) {
        for (int e = 0; e < MAX_ERRNO; e++)
            errs[e] += srv[k].c.errors[e];
        full_servers += atomic_load(&srv[k].c.full);
        uint64_t a = atomic_load(&srv[k].c.accepted);
        if (a > max_per_server)
            max_per_server = a;
    }

    double ramp = t_est - t0, accs = t_acc - t0;
    double ucpu = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
    double scpu = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
    printf("{\"program\":\"kernel_hold\",\"watch\":%s,\"count\":%ld,\"established\":%llu,\"accepted\":%llu,"
           "\"failed\":%llu,\"errors\":{",
           g_watch ? "true" : "false", g_count, (unsigned long long)est, (unsigned long long)acc, (unsigned long long)fail);
    int first = 1;
    for (int e = 0; e < MAX_ERRNO; e++) {
        if (!errs[e])
            continue;
        const char *name = e ? strerrorname_np(e) : NULL;
        if (name)
            printf("%s\"%s\":%llu", first ? "" : ",", name, (unsigned long long)errs[e]);
        else
            printf("%s\"errno_%d\":%llu", first ? "" : ",", e, (unsigned long long)errs[e]);
        first = 0;
    }
    printf("},\"server_threads\":%d,\"client_threads\":%d,\"source_addrs\":%d,"
           "\"max_accepted_per_server\":%llu,\"full_server_threads\":%d,\"timed_out\":%s,"
           "\"ramp_seconds\":%.3f,\"accept_seconds\":%.3f,\"rate_per_s\":%.1f,"
           "\"hold_seconds\":%.1f,\"teardown_seconds\":%.3f,"
           "\"user_cpu_seconds\":%.3f,\"sys_cpu_seconds\":%.3f,\"kernel_cpu_share\":%.3f}\n",
           g_nservers, g_nclients, g_nsrc, (unsigned long long)max_per_server, full_servers, timed_out ? "true" : "false",
           ramp, accs, accs > 0 ? (double)acc_ramp / accs : 0.0, hold, td1 - td0,
           ucpu, scpu, (ucpu + scpu) > 0 ? scpu / (ucpu + scpu) : 0.0);
    if (fflush(stdout) != 0)
        die("fflush(stdout)", errno);
    free(srv);
    free(cli);
    return timed_out ? 3 : 0;
}
