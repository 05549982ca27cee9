/*
 * barerelay: the physical limit of relaying UDP on this machine, for `python -m bench media
 * --baseline`. Same socket layout and system calls as the media engine (one socket per stream,
 * epoll, recvmmsg, sendmmsg) but no RTP work at all: no parsing, no statistics, no rewriting.
 * The engine's CPU per packet divided by this one's is the engine's overhead.
 *
 *   barerelay --pairs N [--host 127.0.0.1] [--rcvbuf BYTES]
 *
 * Protocol on stdin/stdout (one line each):
 *   out: PORTS p0 p1 ... p(2N-1)      socket 2i and 2i+1 are the two legs of call i
 *   in:  DEST d0 d1 ... d(2N-1)       what leaves socket j goes to host:d_j
 *   in:  STOP (or end of input)       then it prints {"packets_relayed": n} and exits
 * A datagram arriving at socket j leaves from its partner socket j^1.
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 32
#define MAX_EVENTS 256
#define STDIN_TAG 0xFFFFFFFFu

static void die(const char *what) {
    perror(what);
    exit(2);
}

int main(int argc, char **argv) {
    int pairs = 0;
    const char *host = "127.0.0.1";
    int rcvbuf = 1 << 20;
    static struct option opts[] = {
        {"pairs", required_argument, 0, 'p'},
        {"host", required_argument, 0, 'h'},
        {"rcvbuf", required_argument, 0, 'b'},
        {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'p': pairs = atoi(optarg); break;
        case 'h': host = optarg; break;
        case 'b': rcvbuf = atoi(optarg); break;
        default: fprintf(stderr, "usage: barerelay --pairs N [--host IP]\n"); return 2;
        }
    }
    if (pairs <= 0 || pairs > 30000) {
        fprintf(stderr, "barerelay: --pairs 1..30000 is required\n");
        return 2;
    }
    int n = 2 * pairs;
    int *fds = calloc(n, sizeof *fds);
    struct sockaddr_in *dest = calloc(n, sizeof *dest);
    if (!fds || !dest) die("calloc");
    struct in_addr addr;
    if (inet_pton(AF_INET, host, &addr) != 1) {
        fprintf(stderr, "barerelay: bad --host %s\n", host);
        return 2;
    }
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    printf("PORTS");
    for (int j = 0; j < n; j++) {
        fds[j] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fds[j] < 0) die("socket");
        setsockopt(fds[j], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        setsockopt(fds[j], SOL_SOCKET, SO_SNDBUF, &rcvbuf, sizeof rcvbuf);
        struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr = addr, .sin_port = 0};
        socklen_t len = sizeof local;
        if (bind(fds[j], (struct sockaddr *)&local, sizeof local) != 0) die("bind");
        getsockname(fds[j], (struct sockaddr *)&local, &len);
        printf(" %d", ntohs(local.sin_port));
    }
    printf("\n");
    fflush(stdout);

    char word[16];
    if (scanf("%15s", word) != 1 || strcmp(word, "DEST") != 0) {
        fprintf(stderr, "barerelay: expected DEST on stdin\n");
        return 2;
    }
    for (int j = 0; j < n; j++) {
        int port;
        if (scanf("%d", &port) != 1) {
            fprintf(stderr, "barerelay: DEST needs %d ports\n", n);
            return 2;
        }
        dest[j].sin_family = AF_INET;
        dest[j].sin_addr = addr;
        dest[j].sin_port = htons((uint16_t)port);
    }
    for (int j = 0; j < n; j++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)j};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[j], &ev) != 0) die("epoll_ctl");
    }
    /* The rest of stdin (STOP or EOF) ends the run; read it raw from now on. */
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &sev) != 0) die("epoll_ctl stdin");

    static uint8_t bufs[BATCH][2048];
    struct iovec iov[BATCH];
    struct mmsghdr rx[BATCH], tx[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof bufs[i];
        memset(&rx[i], 0, sizeof rx[i]);
        rx[i].msg_hdr.msg_iov = &iov[i];
        rx[i].msg_hdr.msg_iovlen = 1;
    }
    struct iovec txiov[BATCH];
    unsigned long long relayed = 0;
    struct epoll_event evs[MAX_EVENTS];
    int running = 1;
    while (running) {
        int k = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < k; e++) {
            uint32_t j = evs[e].data.u32;
            if (j == STDIN_TAG) {
                char buf[64];
                ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
                if (r <= 0 || memmem(buf, (size_t)r, "STOP", 4)) running = 0;
                continue;
            }
            int got = recvmmsg(fds[j], rx, BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0) continue;
            uint32_t out = j ^ 1u;
            for (int i = 0; i < got; i++) {
                txiov[i].iov_base = bufs[i];
                txiov[i].iov_len = rx[i].msg_len;
                memset(&tx[i], 0, sizeof tx[i]);
                tx[i].msg_hdr.msg_iov = &txiov[i];
                tx[i].msg_hdr.msg_iovlen = 1;
                tx[i].msg_hdr.msg_name = &dest[out];
                tx[i].msg_hdr.msg_namelen = sizeof dest[out];
            }
            int sent = 0;
            while (sent < got) {
                int r = sendmmsg(fds[out], tx + sent, got - sent, 0);
                if (r < 0) {
                    if (errno == EINTR) continue;
                    sent++;
                    continue;
                }
                sent += r;
                relayed += r;
            }
        }
    }
    printf("{\"packets_relayed\": %llu}\n", relayed);
    fflush(stdout);
    return 0;
}
