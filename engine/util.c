#include <math.h>
#include <time.h>

#include "internal.h"

uint64_t brg__fnv1a(uint64_t hash, const void *data, size_t size) {
    const unsigned char *p = data;
    for (size_t i = 0; i < size; i++) {
        hash ^= p[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

uint64_t brg__splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

float brg__rand_uniform(uint64_t *state) {
    return (float)(brg__splitmix64(state) >> 40) / 16777216.0f;
}

float brg__rand_normal(uint64_t *state) {
    /* u1 in (0, 1] so that log() is finite. */
    double u1 = ((double)(brg__splitmix64(state) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (double)(brg__splitmix64(state) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

double brg__now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
