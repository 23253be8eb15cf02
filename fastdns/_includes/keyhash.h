/* A keyed 64-bit hash for short keys (DNS names, <= a few hundred bytes):
 * wyhash (final version, Wang Yi, public domain) without the 48-byte loop,
 * with `extra` (e.g. qtype, qclass, DO) folded into the seed.  With a secret
 * random seed per table, crafted names cannot be aimed at one bucket.
 * Never returns 0 (0 marks an empty slot).
 */
#ifndef FASTDNS_KEYHASH_H
#define FASTDNS_KEYHASH_H

#include <stdint.h>
#include <string.h>
static inline uint64_t fd_wymix(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}
static inline uint64_t fd_rd8(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint64_t fd_rd4(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
/* wyhash (final version) for inputs up to a few hundred bytes, keyed by
 * seed, with `extra` (qtype, qclass, DO) folded into the seed. */
static inline uint64_t fd_key_hash(const uint8_t *p, size_t len, uint64_t seed, uint64_t extra) {
    const uint64_t s0 = 0xa0761d6478bd642full, s1 = 0xe7037ed1a0b428dbull,
                   s2 = 0x8ebc6af09c88c6e3ull;
    uint64_t a, b;
    seed ^= fd_wymix(extra ^ s2, s1);
    seed ^= fd_wymix(seed ^ s0, s1);
    if (len <= 16) {
        if (len >= 4) {
            a = (fd_rd4(p) << 32) | fd_rd4(p + ((len >> 3) << 2));
            b = (fd_rd4(p + len - 4) << 32) | fd_rd4(p + len - 4 - ((len >> 3) << 2));
        } else if (len > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) | p[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = len;
        while (i > 16) {
            seed = fd_wymix(fd_rd8(p) ^ s1, fd_rd8(p + 8) ^ seed);
            p += 16; i -= 16;
        }
        a = fd_rd8(p + i - 16);
        b = fd_rd8(p + i - 8);
    }
    a ^= s1; b ^= seed;
    {
        __uint128_t r = (__uint128_t)a * b;
        a = (uint64_t)r; b = (uint64_t)(r >> 64);
    }
    uint64_t h = fd_wymix(a ^ s0 ^ len, b ^ s1);
    return h ? h : 1;
}

#endif /* FASTDNS_KEYHASH_H */
