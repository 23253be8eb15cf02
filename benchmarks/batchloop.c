/* A minimal closed-loop UDP DNS load loop: the ceiling fastdns-bench is measured against
 * (issue 19).  S sockets, each keeping up to W queries in flight, sent with sendmmsg and
 * read with recvmmsg in batches of B; the queries (one per line "NAME TYPE" in a file, A
 * or AAAA) are encoded once; IDs run per socket.  An answer only counts if its ID is one
 * in flight on that socket; a socket that has heard nothing for 200 ms forgets what it
 * has in flight (counted lost).  Prints one JSON line: sent, answered, lost, seconds, qps.
 *
 *   gcc -O2 -o batchloop benchmarks/batchloop.c
 *   ./batchloop HOST PORT QUERYFILE SECONDS [SOCKETS=8] [INFLIGHT=128] [BATCH=64]
 *
 * Loopback only by intent: it sends as fast as answers come back.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXQ 65536
#define MAXS 64
#define MAXB 256
#define QLEN 300

static uint8_t qwire[MAXQ][QLEN];
static int qlen[MAXQ];
static int nq;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int encode(const char *name, int qtype, uint8_t *out) {
    int n = 12, len;
    const char *p = name, *dot;
    memset(out, 0, 12);
    out[2] = 0x01;                  /* RD */
    out[5] = 1;                     /* QDCOUNT */
    while (*p && *p != '\n') {
        dot = strchr(p, '.');
        len = dot ? (int)(dot - p) : (int)strlen(p);
        if (len == 0) break;
        if (len > 63 || n + len + 6 > QLEN) return -1;
        out[n++] = (uint8_t)len;
        memcpy(out + n, p, len);
        n += len;
        if (!dot) break;
        p = dot + 1;
    }
    out[n++] = 0;
    out[n++] = qtype >> 8; out[n++] = qtype & 0xFF;
    out[n++] = 0; out[n++] = 1;
    return n;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT QUERYFILE SECONDS [SOCKETS] [INFLIGHT] [BATCH]\n", argv[0]);
        return 2;
    }
    int nsock = argc > 5 ? atoi(argv[5]) : 8, win = argc > 6 ? atoi(argv[6]) : 128;
    int batch = argc > 7 ? atoi(argv[7]) : 64;
    double secs = atof(argv[4]);
    if (nsock < 1 || nsock > MAXS || win < 1 || win > 65535 || batch < 1 || batch > MAXB) return 2;
    FILE *f = fopen(argv[3], "r");
    if (!f) { perror(argv[3]); return 2; }
    char line[512], name[300], type[16];
    while (nq < MAXQ && fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%299s %15s", name, type) != 2) continue;
        int t = strcmp(type, "AAAA") == 0 ? 28 : 1;
        int n = encode(name, t, qwire[nq]);
        if (n > 0) qlen[nq++] = n;
    }
    fclose(f);
    if (nq == 0) { fprintf(stderr, "no queries\n"); return 2; }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    int fd[MAXS], inflight[MAXS];
    uint16_t next_id[MAXS];
    uint8_t *busy[MAXS];            /* per socket: which IDs are in flight */
    double heard[MAXS];
    struct pollfd pfd[MAXS];
    for (int s = 0; s < nsock; s++) {
        fd[s] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fd[s] < 0 || connect(fd[s], (struct sockaddr *)&to, sizeof to) < 0) { perror("socket"); return 1; }
        int buf = 4 << 20;
        setsockopt(fd[s], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        inflight[s] = 0; next_id[s] = (uint16_t)(s * 7919); heard[s] = now();
        busy[s] = calloc(65536, 1);
        pfd[s].fd = fd[s]; pfd[s].events = POLLIN;
    }
    static uint8_t sbuf[MAXB][QLEN], rbuf[MAXB][512];
    struct mmsghdr smsg[MAXB], rmsg[MAXB];
    struct iovec siov[MAXB], riov[MAXB];
    for (int i = 0; i < MAXB; i++) {
        siov[i].iov_base = sbuf[i];
        riov[i].iov_base = rbuf[i]; riov[i].iov_len = sizeof rbuf[i];
        memset(&smsg[i], 0, sizeof smsg[i]); memset(&rmsg[i], 0, sizeof rmsg[i]);
        smsg[i].msg_hdr.msg_iov = &siov[i]; smsg[i].msg_hdr.msg_iovlen = 1;
        rmsg[i].msg_hdr.msg_iov = &riov[i]; rmsg[i].msg_hdr.msg_iovlen = 1;
    }
    long long sent = 0, answered = 0, lost = 0;
    int qi = 0;
    double t0 = now(), end = t0 + secs, t = t0;
    while (t < end) {
        for (int s = 0; s < nsock; s++) {
            int room = win - inflight[s];
            while (room > 0) {
                int k = room < batch ? room : batch;
                for (int i = 0; i < k; i++) {
                    uint16_t id = next_id[s]++;
                    while (busy[s][id]) id = next_id[s]++;
                    memcpy(sbuf[i], qwire[qi], qlen[qi]);
                    sbuf[i][0] = id >> 8; sbuf[i][1] = id & 0xFF;
                    siov[i].iov_len = qlen[qi];
                    busy[s][id] = 1;
                    if (++qi == nq) qi = 0;
                }
                int r = sendmmsg(fd[s], smsg, k, 0);
                if (r < 0) r = 0;
                for (int i = r; i < k; i++)   /* not sent: not in flight */
                    busy[s][(sbuf[i][0] << 8) | sbuf[i][1]] = 0;
                sent += r; inflight[s] += r; room -= k;
                if (r < k) break;
            }
        }
        if (poll(pfd, nsock, 1) < 0 && errno != EINTR) break;
        t = now();
        for (int s = 0; s < nsock; s++) {
            if (pfd[s].revents & POLLIN) {
                int r;
                while ((r = recvmmsg(fd[s], rmsg, batch, MSG_DONTWAIT, NULL)) > 0) {
                    for (int i = 0; i < r; i++) {
                        if (rmsg[i].msg_len < 12) continue;
                        uint16_t id = (rbuf[i][0] << 8) | rbuf[i][1];
                        if (!busy[s][id]) continue;
                        busy[s][id] = 0; inflight[s]--; answered++;
                    }
                    heard[s] = t;
                    if (r < batch) break;
                }
            } else if (inflight[s] && t - heard[s] > 0.2) {
                lost += inflight[s]; inflight[s] = 0; heard[s] = t;
                memset(busy[s], 0, 65536);
            }
        }
    }
    double dt = now() - t0;
    printf("{\"sent\": %lld, \"answered\": %lld, \"lost\": %lld, \"seconds\": %.3f, \"qps\": %.0f}\n",
           sent, answered, lost, dt, answered / dt);
    return 0;
}
