/*
 * responder: the machine's ceiling for a UDP DNS server.
 *
 * Answers every query with one A record (192.0.2.1, TTL 60) for the name
 * asked, without looking anything up: copies header + question, sets QR/AA/RA,
 * ANCOUNT 1, drops anything after the question (EDNS too).  recvmmsg/sendmmsg
 * in batches of 64 on one socket, one thread.
 *
 *   gcc -O2 -o responder responder.c
 *   ./responder PORT [CPU]        # CPU: pin to this core
 *   ./responder -t PORT [CPU]     # DNS over TCP instead (RFC 7766 framing,
 *                                 # pipelined, epoll, any number of connections)
 *
 * Binds 127.0.0.1:PORT.  On SIGTERM/SIGINT prints "answered N" to stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define BUF 2048

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* offset just past the question, or 0 if malformed */
static size_t question_end(const uint8_t *p, size_t n) {
    size_t i = 12;
    if (n < 12 || p[4] != 0 || p[5] != 1) return 0;
    while (i < n && p[i] != 0) {
        if (p[i] & 0xC0) return 0;
        i += p[i] + 1;
    }
    i += 1 + 4;
    return i <= n ? i : 0;
}

static const uint8_t RR[16] = {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};

/* the answer to query q (n bytes) into r; its length, or 0 to drop the query */
static size_t answer(const uint8_t *q, size_t n, uint8_t *r) {
    size_t qe = question_end(q, n);
    if (!qe || (q[2] & 0x80)) return 0;
    memcpy(r, q, qe);
    r[2] = 0x80 | (q[2] & 0x79) | 0x04;   /* QR, opcode, AA, RD kept */
    r[3] = 0x80;                          /* RA, NOERROR */
    r[6] = 0; r[7] = 1;                   /* ANCOUNT 1 */
    r[8] = r[9] = r[10] = r[11] = 0;
    memcpy(r + qe, RR, sizeof RR);
    return qe + sizeof RR;
}

/* ---- TCP ---- */
#define MAXFD 4096
#define TBUF (1 << 18)
struct conn { uint8_t *in, *out; size_t ilen, olen, opos; };
static struct conn conns[MAXFD];

static void tcp_close(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(conns[fd].in); free(conns[fd].out);
    memset(&conns[fd], 0, sizeof conns[fd]);
}

/* write what is pending; -1 if the connection failed */
static int tcp_flush(int ep, int fd) {
    struct conn *c = &conns[fd];
    while (c->opos < c->olen) {
        ssize_t w = send(fd, c->out + c->opos, c->olen - c->opos, MSG_NOSIGNAL);
        if (w > 0) { c->opos += w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        return -1;
    }
    if (c->opos == c->olen) c->opos = c->olen = 0;
    struct epoll_event ev = {.events = EPOLLIN | (c->olen ? EPOLLOUT : 0), .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    return 0;
}

static int serve_tcp(int port) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1024) != 0) { perror("bind"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    unsigned long long answered = 0;
    printf("responder on 127.0.0.1:%d (tcp) pid %d\n", port, getpid());
    fflush(stdout);
    while (!stop) {
        int n = epoll_wait(ep, evs, 64, 200);
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (cfd >= MAXFD) { close(cfd); continue; }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[cfd].in = malloc(TBUF);
                    conns[cfd].out = malloc(TBUF);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            struct conn *c = &conns[fd];
            if ((evs[k].events & EPOLLOUT) && tcp_flush(ep, fd) < 0) { tcp_close(ep, fd); continue; }
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            if (c->olen > TBUF / 2) continue;     /* the client does not read: stop reading too */
            ssize_t r = recv(fd, c->in + c->ilen, TBUF - c->ilen, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { tcp_close(ep, fd); continue; }
            if (r < 0) continue;
            c->ilen += r;
            size_t pos = 0;
            while (c->ilen - pos >= 2) {
                size_t len = (c->in[pos] << 8) | c->in[pos + 1];
                if (c->ilen - pos - 2 < len) break;
                if (c->olen + 2 + len + sizeof RR > TBUF) break;
                size_t m = answer(c->in + pos + 2, len, c->out + c->olen + 2);
                if (m) {
                    c->out[c->olen] = m >> 8; c->out[c->olen + 1] = m & 0xFF;
                    c->olen += 2 + m;
                    answered++;
                }
                pos += 2 + len;
            }
            memmove(c->in, c->in + pos, c->ilen - pos);
            c->ilen -= pos;
            if (tcp_flush(ep, fd) < 0) tcp_close(ep, fd);
        }
    }
    fprintf(stderr, "answered %llu\n", answered);
    return 0;
}

int main(int argc, char **argv) {
    int tcp = argc > 1 && strcmp(argv[1], "-t") == 0;
    if (tcp) { argc--; argv++; }
    if (argc < 2) {
        fprintf(stderr, "usage: %s [-t] PORT [CPU]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    if (argc > 2) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(argv[2]), &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("sched_setaffinity"); return 1; }
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (tcp) return serve_tcp(port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }

    static uint8_t rbuf[BATCH][BUF], sbuf[BATCH][BUF];
    static struct sockaddr_in peers[BATCH];
    static struct iovec riov[BATCH], siov[BATCH];
    static struct mmsghdr rmsg[BATCH], smsg[BATCH];
    for (int i = 0; i < BATCH; i++) {
        riov[i].iov_base = rbuf[i];
        riov[i].iov_len = BUF;
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
        rmsg[i].msg_hdr.msg_name = &peers[i];
        siov[i].iov_base = sbuf[i];
        smsg[i].msg_hdr.msg_iov = &siov[i];
        smsg[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long answered = 0;
    printf("responder on 127.0.0.1:%d pid %d\n", port, getpid());
    fflush(stdout);
    while (!stop) {
        for (int i = 0; i < BATCH; i++) rmsg[i].msg_hdr.msg_namelen = sizeof peers[i];
        int n = recvmmsg(fd, rmsg, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            return 1;
        }
        int m = 0;
        for (int i = 0; i < n; i++) {
            size_t len = answer(rbuf[i], rmsg[i].msg_len, sbuf[m]);
            if (!len) continue;
            siov[m].iov_len = len;
            smsg[m].msg_hdr.msg_name = &peers[i];
            smsg[m].msg_hdr.msg_namelen = rmsg[i].msg_hdr.msg_namelen;
            m++;
        }
        int off = 0;
        while (off < m) {
            int s = sendmmsg(fd, smsg + off, m - off, 0);
            if (s < 0) {
                if (errno == EINTR) continue;
                off++;   /* drop the datagram we cannot send */
                continue;
            }
            off += s;
            answered += s;
        }
    }
    fprintf(stderr, "answered %llu\n", answered);
    return 0;
}
