/*
 * rtpload: a native RTP load generator for `python -m bench media`.
 *
 * Plays 2N G.711 streams (N bidirectional calls) at 50 packets/s each, 160-byte payloads, against
 * a relay under test, receives what the relay sends back, and measures loss and the delay the
 * relay adds. Every packet carries its send time (CLOCK_REALTIME, ns) in an RFC 8285 one-byte
 * header extension (ID 1, 8 bytes), which a relay passes through untouched while rewriting
 * SSRC/sequence/timestamp and even transcoding the payload; the kernel stamps arrival with
 * SO_TIMESTAMPNS, so the generator's own scheduling does not count as relay delay.
 *
 *   rtpload --calls N --duration S [--host 127.0.0.1] [--sockets K (2)] [--tick-us 1000]
 *           [--pt-b 8]   payload type of the B legs (odd streams): 8 = PCMA, for a transcoding
 *                        relay; A legs always send PCMU (0)
 *
 * Protocol on stdin/stdout (one line each):
 *   in:  TARGETS t0 t1 ... t(2N-1)    relay ports; stream 2i and 2i+1 are the two legs of call i
 *   out: PORTS p0 p1 ... p(2N-1)      the generator port stream j sends from (to t_j) and where
 *                                     the relay must send leg j's packets
 *   in:  GO                            start sending (after the relay knows where to send)
 *   out: {...}                         one JSON object with the results
 *
 * The generator must cost the machine as little as possible, since it shares the CPUs with the
 * relay it measures: the streams share K sockets (stream j uses socket j % K; K = 2N gives one
 * socket per stream, like real phones), so sends and receives go out and in batches
 * (sendmmsg/recvmmsg) instead of one system call per packet; and it runs on a clock (every
 * --tick-us, default 1 ms: send what is due, read everything waiting) rather than waiting in
 * epoll, so the relay never pays for waking it up, as it would not for a remote peer. Arrival
 * times come from the kernel, so the polling adds nothing to the measured delay. The relay
 * cannot tell any of this: each of its endpoints still talks to exactly one remote address.
 *
 * Stream j's packets come back from the relay port t(j^1) (the other leg of the call); that port
 * identifies the direction a received packet belongs to. Delay variation is reported per
 * RFC 5481 §4.2 (PDV): each packet's one-way delay minus the minimum delay of its direction;
 * "latency" is the raw one-way delay through the relay (and the loopback stack).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PTIME_NS 20000000LL      /* 20 ms: 50 packets/s per stream */
#define PAYLOAD 160              /* G.711, 20 ms at 8 kHz */
#define EXT_WORDS 3              /* RFC 8285 one-byte header: 1+8 bytes used, padded to 12 */
#define HEADER (12 + 4 + 4 * EXT_WORDS)
#define PACKET (HEADER + PAYLOAD)
#define TX_BATCH 256             /* packets queued per socket before a sendmmsg */
#define RX_BATCH 64
#define HIST_US 1000000          /* 1 µs bins up to 1 s, plus an overflow bin */
#define IDLE_DRAIN_NS 300000000LL /* after sending stops, stop when nothing arrived for 300 ms */
#define MAX_DRAIN_NS 30000000000LL

struct stream {
    struct sockaddr_in target;
    int sock;                   /* index of the generator socket it uses */
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts;
    uint64_t sent;
    /* what came back for this direction */
    uint64_t received;
    int have_rx;
    uint16_t last_rx_seq;
    uint32_t last_rx_ssrc;
    uint64_t discontinuities;   /* sequence not +1, or SSRC changed, in what the relay sent */
    uint32_t min_delay_ns;
};

struct txq {
    int count;
    uint8_t (*bufs)[PACKET];
    struct iovec *iov;
    struct mmsghdr *msgs;
    int *owner;                 /* stream of each queued packet */
};

struct sample {
    uint32_t delay_ns;
    uint32_t stream;
};

static struct stream *streams;
static int nstreams;
static int *fds;
static struct txq *txqs;
static int32_t direction_of_port[65536];   /* relay source port -> stream whose packets it relays */
static struct sample *samples;
static size_t nsamples, samples_cap;
static uint32_t *lag_hist;                 /* send lag behind schedule, µs */
static uint64_t bad_packets, send_failures;
static int pt_b = 0;   /* payload type the B legs (odd streams) send */

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static void hist_add(uint32_t *hist, int64_t us) {
    if (us < 0) us = 0;
    if (us > HIST_US) us = HIST_US;
    hist[us]++;
}

/* Smallest value (µs) with at least q of the mass at or below it. */
static double hist_quantile(const uint32_t *hist, uint64_t total, double q) {
    if (total == 0) return 0.0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (int i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen >= want) return (double)i;
    }
    return (double)HIST_US;
}

static double hist_max(const uint32_t *hist) {
    for (int i = HIST_US; i >= 0; i--)
        if (hist[i]) return (double)i;
    return 0.0;
}

static void flush(int k) {
    struct txq *q = &txqs[k];
    int done = 0;
    uint64_t now = (uint64_t)clock_ns(CLOCK_REALTIME);
    /* Stamp at the last moment: queueing inside the generator is not relay delay. */
    for (int i = 0; i < q->count; i++)
        for (int b = 0; b < 8; b++) q->bufs[i][17 + b] = (uint8_t)(now >> (56 - 8 * b));
    while (done < q->count) {
        int r = sendmmsg(fds[k], q->msgs + done, q->count - done, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            /* the datagram never left: it does not count as sent */
            streams[q->owner[done]].sent--;
            send_failures++;
            done++;
            continue;
        }
        done += r;
    }
    q->count = 0;
}

static void queue_packet(int j, int64_t due_mono, int64_t now_mono) {
    struct stream *s = &streams[j];
    struct txq *q = &txqs[s->sock];
    uint8_t *pkt = q->bufs[q->count];
    pkt[0] = 0x90;                       /* V=2, X=1 */
    pkt[1] = (j & 1) ? (uint8_t)pt_b : 0; /* A legs PCMU (0), B legs as negotiated */
    pkt[2] = s->seq >> 8; pkt[3] = s->seq & 0xFF;
    put32(pkt + 4, s->ts);
    put32(pkt + 8, s->ssrc);
    pkt[12] = 0xBE; pkt[13] = 0xDE;      /* RFC 8285 §4.2 one-byte header profile */
    pkt[14] = 0; pkt[15] = EXT_WORDS;
    pkt[16] = (1 << 4) | 7;              /* ID 1, length 8 bytes (L = 7); bytes 17-24 */
    memset(pkt + 25, 0, HEADER - 25);
    /* Silence in the leg's law (µ-law 0xFF, A-law 0xD5); the payload is not inspected. */
    memset(pkt + HEADER, pkt[1] == 8 ? 0xD5 : 0xFF, PAYLOAD);
    q->iov[q->count].iov_base = pkt;
    q->iov[q->count].iov_len = PACKET;
    q->msgs[q->count].msg_hdr.msg_name = &s->target;
    q->msgs[q->count].msg_hdr.msg_namelen = sizeof s->target;
    q->owner[q->count] = j;
    q->count++;
    s->sent++;
    s->seq++;
    s->ts += PAYLOAD;
    hist_add(lag_hist, (now_mono - due_mono) / 1000);
    if (q->count == TX_BATCH) flush(s->sock);
}

static void on_packet(uint16_t src_port, const uint8_t *p, size_t n, int64_t rx_real) {
    int32_t j = direction_of_port[src_port];
    if (j < 0 || n < HEADER || (p[0] >> 6) != 2 || !(p[0] & 0x10) || p[12] != 0xBE || p[13] != 0xDE
        || p[16] != ((1 << 4) | 7)) {
        bad_packets++;
        return;
    }
    struct stream *s = &streams[j];
    uint16_t seq = (uint16_t)((p[2] << 8) | p[3]);
    uint32_t ssrc = ((uint32_t)p[8] << 24) | ((uint32_t)p[9] << 16) | ((uint32_t)p[10] << 8) | p[11];
    if (s->have_rx && (ssrc != s->last_rx_ssrc || (uint16_t)(s->last_rx_seq + 1) != seq))
        s->discontinuities++;
    s->have_rx = 1;
    s->last_rx_seq = seq;
    s->last_rx_ssrc = ssrc;
    s->received++;
    int64_t delay = rx_real - (int64_t)get64(p + 17);
    if (delay < 0) delay = 0;
    if (delay > 0xFFFFFFFFLL) delay = 0xFFFFFFFFLL;
    if (nsamples == samples_cap) {
        samples_cap = samples_cap ? samples_cap * 2 : 1 << 20;
        samples = realloc(samples, samples_cap * sizeof *samples);
        if (!samples) die("realloc");
    }
    samples[nsamples].delay_ns = (uint32_t)delay;
    samples[nsamples].stream = (uint32_t)j;
    nsamples++;
    if ((uint32_t)delay < s->min_delay_ns) s->min_delay_ns = (uint32_t)delay;
}

/* Read one batch from socket k; returns the number of datagrams. */
static int receive(int k) {
    static uint8_t bufs[RX_BATCH][2048];
    static char ctrl[RX_BATCH][64];
    static struct sockaddr_in from[RX_BATCH];
    static struct iovec iov[RX_BATCH];
    static struct mmsghdr msgs[RX_BATCH];
    for (int i = 0; i < RX_BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof bufs[i];
        memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        msgs[i].msg_hdr.msg_control = ctrl[i];
        msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
    }
    int n = recvmmsg(fds[k], msgs, RX_BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return 0;
    int64_t fallback = clock_ns(CLOCK_REALTIME);
    for (int i = 0; i < n; i++) {
        int64_t rx = fallback;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(c), sizeof ts);
                rx = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
            }
        }
        on_packet(ntohs(from[i].sin_port), bufs[i], msgs[i].msg_len, rx);
    }
    return n;
}

static int64_t due_time(int64_t start, uint64_t m) {
    /* Global packet m is stream m % nstreams's (m / nstreams)-th packet. Streams' phases are
     * spread evenly over the 20 ms, as calls that started at random times would be. */
    return start + (int64_t)(m / nstreams) * PTIME_NS + (int64_t)(m % nstreams) * PTIME_NS / nstreams;
}

int main(int argc, char **argv) {
    int calls = 0, nsockets = 2, tick_us = 1000;
    double duration = 0;
    const char *host = "127.0.0.1";
    int rcvbuf = 64 << 20;   /* a shared socket carries up to half of all streams */
    static struct option opts[] = {
        {"calls", required_argument, 0, 'c'},   {"duration", required_argument, 0, 'd'},
        {"host", required_argument, 0, 'h'},    {"sockets", required_argument, 0, 's'},
        {"rcvbuf", required_argument, 0, 'b'},  {"tick-us", required_argument, 0, 't'},
        {"pt-b", required_argument, 0, 'p'},
        {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': calls = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'h': host = optarg; break;
        case 's': nsockets = atoi(optarg); break;
        case 'b': rcvbuf = atoi(optarg); break;
        case 't': tick_us = atoi(optarg); break;
        case 'p': pt_b = atoi(optarg) & 0x7F; break;
        default: fprintf(stderr, "usage: rtpload --calls N --duration S [--host IP] [--sockets K]\n"); return 2;
        }
    }
    if (calls <= 0 || calls > 30000 || duration <= 0 || nsockets <= 0 || tick_us <= 0) {
        fprintf(stderr, "rtpload: --calls 1..30000, --duration > 0, --sockets > 0, --tick-us > 0\n");
        return 2;
    }
    nstreams = 2 * calls;
    if (nsockets > nstreams) nsockets = nstreams;
    streams = calloc(nstreams, sizeof *streams);
    fds = calloc(nsockets, sizeof *fds);
    txqs = calloc(nsockets, sizeof *txqs);
    lag_hist = calloc(HIST_US + 1, sizeof *lag_hist);
    if (!streams || !fds || !txqs || !lag_hist) die("calloc");
    for (int p = 0; p < 65536; p++) direction_of_port[p] = -1;

    char word[16];
    if (scanf("%15s", word) != 1 || strcmp(word, "TARGETS") != 0) {
        fprintf(stderr, "rtpload: expected TARGETS on stdin\n");
        return 2;
    }
    struct in_addr addr;
    if (inet_pton(AF_INET, host, &addr) != 1) {
        fprintf(stderr, "rtpload: bad --host %s\n", host);
        return 2;
    }
    srand((unsigned)clock_ns(CLOCK_REALTIME));
    for (int j = 0; j < nstreams; j++) {
        int port;
        if (scanf("%d", &port) != 1 || port <= 0 || port > 65535) {
            fprintf(stderr, "rtpload: TARGETS needs %d ports\n", nstreams);
            return 2;
        }
        struct stream *s = &streams[j];
        s->target.sin_family = AF_INET;
        s->target.sin_addr = addr;
        s->target.sin_port = htons((uint16_t)port);
        s->sock = j % nsockets;
        s->ssrc = ((uint32_t)rand() << 16) ^ (uint32_t)rand();
        s->seq = (uint16_t)rand();
        s->ts = (uint32_t)rand();
        s->min_delay_ns = UINT32_MAX;
    }
    for (int j = 0; j < nstreams; j++)
        direction_of_port[ntohs(streams[j ^ 1].target.sin_port)] = j;

    for (int k = 0; k < nsockets; k++) {
        fds[k] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fds[k] < 0) die("socket");
        int one = 1;
        /* As root, exceed net.core.rmem_max: a shared socket carries many streams. */
        if (setsockopt(fds[k], SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
            setsockopt(fds[k], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (setsockopt(fds[k], SOL_SOCKET, SO_SNDBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
            setsockopt(fds[k], SOL_SOCKET, SO_SNDBUF, &rcvbuf, sizeof rcvbuf);
        if (setsockopt(fds[k], SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0) die("SO_TIMESTAMPNS");
        struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr = addr, .sin_port = 0};
        if (bind(fds[k], (struct sockaddr *)&local, sizeof local) != 0) die("bind");
        txqs[k].bufs = calloc(TX_BATCH, PACKET);
        txqs[k].iov = calloc(TX_BATCH, sizeof(struct iovec));
        txqs[k].msgs = calloc(TX_BATCH, sizeof(struct mmsghdr));
        txqs[k].owner = calloc(TX_BATCH, sizeof(int));
        if (!txqs[k].bufs || !txqs[k].iov || !txqs[k].msgs || !txqs[k].owner) die("calloc");
        for (int i = 0; i < TX_BATCH; i++) {
            txqs[k].msgs[i].msg_hdr.msg_iov = &txqs[k].iov[i];
            txqs[k].msgs[i].msg_hdr.msg_iovlen = 1;
        }
    }
    printf("PORTS");
    for (int j = 0; j < nstreams; j++) {
        struct sockaddr_in local;
        socklen_t len = sizeof local;
        getsockname(fds[streams[j].sock], (struct sockaddr *)&local, &len);
        printf(" %d", ntohs(local.sin_port));
    }
    printf("\n");
    fflush(stdout);
    if (scanf("%15s", word) != 1 || strcmp(word, "GO") != 0) {
        fprintf(stderr, "rtpload: expected GO on stdin\n");
        return 2;
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    int64_t start = clock_ns(CLOCK_MONOTONIC);
    int64_t stop_sending = start + (int64_t)(duration * 1e9);
    int64_t tick_ns = (int64_t)tick_us * 1000;
    int64_t last_rx = stop_sending;
    uint64_t next = 0;
    int64_t tick = start;
    for (;;) {
        int64_t now = clock_ns(CLOCK_MONOTONIC);
        int sending = now < stop_sending;
        if (!sending && (now - last_rx > IDLE_DRAIN_NS || now - stop_sending > MAX_DRAIN_NS)) break;
        if (sending) {
            int64_t due;
            while ((due = due_time(start, next)) <= now && due < stop_sending) {
                queue_packet((int)(next % nstreams), due, now);
                next++;
            }
            for (int k = 0; k < nsockets; k++)
                if (txqs[k].count) flush(k);
        }
        /* Empty every socket: falling behind on receiving would overflow the shared sockets'
         * buffers and show up as loss that the relay did not cause. */
        int got = 0;
        for (int k = 0; k < nsockets; k++) {
            int r;
            while ((r = receive(k)) > 0) got += r;
        }
        if (got && !sending) last_rx = clock_ns(CLOCK_MONOTONIC);
        tick += tick_ns;
        if (tick < now) tick = now;   /* fell behind: do not try to make up lost ticks */
        struct timespec until = {.tv_sec = tick / 1000000000LL, .tv_nsec = tick % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec)
                 + ((ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) / 1e6;

    uint64_t sent = 0, received = 0, discontinuities = 0, silent = 0, calls_ok = 0;
    for (int j = 0; j < nstreams; j++) {
        sent += streams[j].sent;
        received += streams[j].received;
        discontinuities += streams[j].discontinuities;
        if (!streams[j].received) silent++;
    }
    /* A call is good when both directions lost less than 0.1% (the bench's goal). */
    for (int i = 0; i < calls; i++) {
        int ok = 1;
        for (int j = 2 * i; j <= 2 * i + 1; j++)
            if (streams[j].sent == 0 || streams[j].received * 1000 < streams[j].sent * 999) ok = 0;
        calls_ok += ok;
    }
    uint32_t *delay_hist = calloc(HIST_US + 1, sizeof *delay_hist);
    uint32_t *pdv_hist = calloc(HIST_US + 1, sizeof *pdv_hist);
    if (!delay_hist || !pdv_hist) die("calloc");
    for (size_t i = 0; i < nsamples; i++) {
        hist_add(delay_hist, samples[i].delay_ns / 1000);
        hist_add(pdv_hist, (samples[i].delay_ns - streams[samples[i].stream].min_delay_ns) / 1000);
    }
    double loss = sent ? 100.0 * ((double)sent - (double)received) / (double)sent : 0.0;
    printf("{\"calls\": %d, \"streams\": %d, \"generator_sockets\": %d, \"duration_s\": %.3f, "
           "\"packets_sent\": %llu, \"packets_received\": %llu, \"rtp_loss_pct\": %.4f, \"calls_ok\": %llu, "
           "\"silent_streams\": %llu, \"seq_discontinuities\": %llu, \"bad_packets\": %llu, "
           "\"latency_p50_ms\": %.3f, \"latency_p99_ms\": %.3f, \"latency_max_ms\": %.3f, "
           "\"jitter_p50_ms\": %.3f, \"jitter_p99_ms\": %.3f, \"jitter_max_ms\": %.3f, "
           "\"send_lag_p99_ms\": %.3f, \"send_lag_max_ms\": %.3f, \"send_failures\": %llu, \"generator_cpu_s\": %.3f}\n",
           calls, nstreams, nsockets, duration, (unsigned long long)sent, (unsigned long long)received, loss,
           (unsigned long long)calls_ok, (unsigned long long)silent, (unsigned long long)discontinuities,
           (unsigned long long)bad_packets,
           hist_quantile(delay_hist, nsamples, 0.50) / 1000, hist_quantile(delay_hist, nsamples, 0.99) / 1000,
           hist_max(delay_hist) / 1000,
           hist_quantile(pdv_hist, nsamples, 0.50) / 1000, hist_quantile(pdv_hist, nsamples, 0.99) / 1000,
           hist_max(pdv_hist) / 1000,
           hist_quantile(lag_hist, next, 0.99) / 1000, hist_max(lag_hist) / 1000,
           (unsigned long long)send_failures, cpu);
    fflush(stdout);
    return 0;
}
