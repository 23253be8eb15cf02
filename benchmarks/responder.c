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

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [CPU]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    if (argc > 2) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(argv[2]), &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("sched_setaffinity"); return 1; }
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

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
    static const uint8_t rr[16] = {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};
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
            const uint8_t *q = rbuf[i];
            size_t qe = question_end(q, rmsg[i].msg_len);
            if (!qe || (q[2] & 0x80)) continue;
            uint8_t *r = sbuf[m];
            memcpy(r, q, qe);
            r[2] = 0x80 | (q[2] & 0x79) | 0x04;   /* QR, opcode, AA, RD kept */
            r[3] = 0x80;                          /* RA, NOERROR */
            r[6] = 0; r[7] = 1;                   /* ANCOUNT 1 */
            r[8] = r[9] = r[10] = r[11] = 0;
            memcpy(r + qe, rr, sizeof rr);
            siov[m].iov_len = qe + sizeof rr;
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
