/*
 * arxctl.chain._native: the bulk scan of `arxctl.chain.verify` in C.
 *
 * `scan()` does exactly what `verify._scan_py` does: it hashes and link-checks the longest run of regular
 * record lines of an export block and returns the Merkle summary of that run. Anything the fast path cannot
 * decide (a damaged line, a gap, a seal, a record naming a sealed agent, an escaped agent name) ends the run,
 * and Python checks that line in full. The loop runs without the GIL.
 *
 * SHA-256 uses the x86 SHA extensions when the CPU has them (checked at import), else portable C.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memrchr */
#endif
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define ARX_X86 1
#endif

/* ---------------------------------------------------------------------------------------------------- */
/* SHA-256                                                                                               */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t H256[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

typedef void (*compress_fn)(uint32_t state[8], const uint8_t *data, size_t blocks);

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress_portable(uint32_t state[8], const uint8_t *data, size_t blocks) {
    uint32_t w[64];
    while (blocks--) {
        for (int t = 0; t < 16; t++) {
            w[t] = (uint32_t)data[4 * t] << 24 | (uint32_t)data[4 * t + 1] << 16 | (uint32_t)data[4 * t + 2] << 8 |
                   (uint32_t)data[4 * t + 3];
        }
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = ROR(w[t - 15], 7) ^ ROR(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = ROR(w[t - 2], 17) ^ ROR(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[t] + w[t];
            uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
        data += 64;
    }
}

#ifdef ARX_X86
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_shani(uint32_t state[8], const uint8_t *data,
                                                                        size_t blocks) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i state1 = _mm_loadu_si128((const __m128i *)&state[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);             /* CDAB */
    state1 = _mm_shuffle_epi32(state1, 0x1B);       /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8); /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);    /* CDGH */
    while (blocks--) {
        const __m128i abef = state0, cdgh = state1;
        __m128i m[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * g)), mask);
        }
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            __m128i msg = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)&K256[4 * g]));
            state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
            msg = _mm_shuffle_epi32(msg, 0x0E);
            state0 = _mm_sha256rnds2_epu32(state0, state1, msg);
            if (g < 12) {
                __m128i x = _mm_sha256msg1_epu32(m[g & 3], m[(g + 1) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(m[(g + 3) & 3], m[(g + 2) & 3], 4));
                m[g & 3] = _mm_sha256msg2_epu32(x, m[(g + 3) & 3]);
            }
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
        data += 64;
    }
    tmp = _mm_shuffle_epi32(state0, 0x1B);          /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);       /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0);    /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);       /* HGFE */
    _mm_storeu_si128((__m128i *)&state[0], state0);
    _mm_storeu_si128((__m128i *)&state[4], state1);
}

/* Two independent messages at once, one block of each per step: SHA256RNDS2 is latency-bound, so two
 * interleaved streams run in little more than the time of one. */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress2_shani(uint32_t sa[8], const uint8_t *da,
                                                                         uint32_t sb[8], const uint8_t *db,
                                                                         size_t blocks) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i ta = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sa[0]), 0xB1);
    __m128i a1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sa[4]), 0x1B);
    __m128i a0 = _mm_alignr_epi8(ta, a1, 8);
    a1 = _mm_blend_epi16(a1, ta, 0xF0);
    __m128i tb = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sb[0]), 0xB1);
    __m128i b1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sb[4]), 0x1B);
    __m128i b0 = _mm_alignr_epi8(tb, b1, 8);
    b1 = _mm_blend_epi16(b1, tb, 0xF0);
    while (blocks--) {
        const __m128i a0s = a0, a1s = a1, b0s = b0, b1s = b1;
        __m128i ma[4], mb[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            ma[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(da + 16 * g)), mask);
            mb[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(db + 16 * g)), mask);
        }
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            const __m128i k = _mm_loadu_si128((const __m128i *)&K256[4 * g]);
            __m128i xa = _mm_add_epi32(ma[g & 3], k);
            __m128i xb = _mm_add_epi32(mb[g & 3], k);
            a1 = _mm_sha256rnds2_epu32(a1, a0, xa);
            b1 = _mm_sha256rnds2_epu32(b1, b0, xb);
            xa = _mm_shuffle_epi32(xa, 0x0E);
            xb = _mm_shuffle_epi32(xb, 0x0E);
            a0 = _mm_sha256rnds2_epu32(a0, a1, xa);
            b0 = _mm_sha256rnds2_epu32(b0, b1, xb);
            if (g < 12) {
                __m128i ya = _mm_sha256msg1_epu32(ma[g & 3], ma[(g + 1) & 3]);
                __m128i yb = _mm_sha256msg1_epu32(mb[g & 3], mb[(g + 1) & 3]);
                ya = _mm_add_epi32(ya, _mm_alignr_epi8(ma[(g + 3) & 3], ma[(g + 2) & 3], 4));
                yb = _mm_add_epi32(yb, _mm_alignr_epi8(mb[(g + 3) & 3], mb[(g + 2) & 3], 4));
                ma[g & 3] = _mm_sha256msg2_epu32(ya, ma[(g + 3) & 3]);
                mb[g & 3] = _mm_sha256msg2_epu32(yb, mb[(g + 3) & 3]);
            }
        }
        a0 = _mm_add_epi32(a0, a0s);
        a1 = _mm_add_epi32(a1, a1s);
        b0 = _mm_add_epi32(b0, b0s);
        b1 = _mm_add_epi32(b1, b1s);
        da += 64;
        db += 64;
    }
    ta = _mm_shuffle_epi32(a0, 0x1B);
    a1 = _mm_shuffle_epi32(a1, 0xB1);
    _mm_storeu_si128((__m128i *)&sa[0], _mm_blend_epi16(ta, a1, 0xF0));
    _mm_storeu_si128((__m128i *)&sa[4], _mm_alignr_epi8(a1, ta, 8));
    tb = _mm_shuffle_epi32(b0, 0x1B);
    b1 = _mm_shuffle_epi32(b1, 0xB1);
    _mm_storeu_si128((__m128i *)&sb[0], _mm_blend_epi16(tb, b1, 0xF0));
    _mm_storeu_si128((__m128i *)&sb[4], _mm_alignr_epi8(b1, tb, 8));
}

static int cpu_has_shani(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 9)) || !(c & (1u << 19))) return 0; /* SSSE3, SSE4.1 */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1; /* SHA */
}
#endif

typedef void (*compress2_fn)(uint32_t sa[8], const uint8_t *da, uint32_t sb[8], const uint8_t *db, size_t blocks);

static void compress2_portable(uint32_t sa[8], const uint8_t *da, uint32_t sb[8], const uint8_t *db,
                               size_t blocks) {
    compress_portable(sa, da, blocks);
    compress_portable(sb, db, blocks);
}

static compress_fn compress = compress_portable;
static compress2_fn compress2 = compress2_portable;
static const char *backend = "portable";

typedef struct {
    uint32_t state[8];
    uint8_t buf[64];
    size_t buflen;
    uint64_t total;
} sha_ctx;

static void sha_init(sha_ctx *ctx) {
    memcpy(ctx->state, H256, sizeof H256);
    ctx->buflen = 0;
    ctx->total = 0;
}

static void sha_update(sha_ctx *ctx, const uint8_t *data, size_t len) {
    ctx->total += len;
    if (ctx->buflen) {
        size_t take = 64 - ctx->buflen;
        if (take > len) take = len;
        memcpy(ctx->buf + ctx->buflen, data, take);
        ctx->buflen += take;
        data += take;
        len -= take;
        if (ctx->buflen < 64) return;
        compress(ctx->state, ctx->buf, 1);
        ctx->buflen = 0;
    }
    if (len >= 64) {
        compress(ctx->state, data, len / 64);
        data += len & ~(size_t)63;
        len &= 63;
    }
    if (len) {
        memcpy(ctx->buf, data, len);
        ctx->buflen = len;
    }
}

static void sha_final(sha_ctx *ctx, uint8_t out[32]) {
    uint64_t bits = ctx->total * 8;
    uint8_t pad[72];
    size_t padlen = (ctx->buflen < 56 ? 56 : 120) - ctx->buflen;
    memset(pad, 0, sizeof pad);
    pad[0] = 0x80;
    for (int k = 0; k < 8; k++) pad[padlen + k] = (uint8_t)(bits >> (56 - 8 * k));
    sha_update(ctx, pad, padlen + 8);
    for (int k = 0; k < 8; k++) {
        out[4 * k] = (uint8_t)(ctx->state[k] >> 24);
        out[4 * k + 1] = (uint8_t)(ctx->state[k] >> 16);
        out[4 * k + 2] = (uint8_t)(ctx->state[k] >> 8);
        out[4 * k + 3] = (uint8_t)ctx->state[k];
    }
}

/* Lay out `parts` as one padded SHA-256 message in `out` (room: total + 72 bytes); returns its block count. */
static size_t pad_message(uint8_t *out, const uint8_t *const *parts, const size_t *lens, int nparts) {
    size_t total = 0;
    for (int k = 0; k < nparts; k++) {
        memcpy(out + total, parts[k], lens[k]);
        total += lens[k];
    }
    size_t blocks = (total + 9 + 63) / 64;
    memset(out + total, 0, blocks * 64 - total);
    out[total] = 0x80;
    uint64_t bits = (uint64_t)total * 8;
    for (int k = 0; k < 8; k++) out[blocks * 64 - 1 - k] = (uint8_t)(bits >> (8 * k));
    return blocks;
}

/* SHA-256(0x01 || left || right): a Merkle interior node (65 bytes: always two blocks). */
static void node_hash(const uint8_t left[32], const uint8_t right[32], uint8_t out[32]) {
    uint8_t msg[128];
    memset(msg + 65, 0, sizeof msg - 65);
    msg[0] = 1;
    memcpy(msg + 1, left, 32);
    memcpy(msg + 33, right, 32);
    msg[65] = 0x80;
    msg[126] = (65 * 8) >> 8;
    msg[127] = (uint8_t)(65 * 8);
    uint32_t state[8];
    memcpy(state, H256, sizeof state);
    compress(state, msg, 2);
    for (int k = 0; k < 8; k++) {
        out[4 * k] = (uint8_t)(state[k] >> 24);
        out[4 * k + 1] = (uint8_t)(state[k] >> 16);
        out[4 * k + 2] = (uint8_t)(state[k] >> 8);
        out[4 * k + 3] = (uint8_t)state[k];
    }
}

/* ---------------------------------------------------------------------------------------------------- */
/* Canonical JSON, as arxctl.canonical writes it (orjson, sorted keys): a fast acceptance test             */

/* Whether the line is provably canonical JSON: no whitespace, object keys in strictly increasing byte order
 * (so no duplicates), strings with orjson's escapes only and valid UTF-8, integers without leading zeros or
 * "-0", the literals. It answers 0 whenever it cannot prove it (floats, integers of 19 digits or more, escaped
 * keys, nesting deeper than MAX_DEPTH); the caller then decides with the full parser. */
#define MAX_DEPTH 64
#define MAX_DIGITS 18 /* longer integers (and seqs) are left to the full parser */

static int utf8_sequence(const uint8_t **at, const uint8_t *end) {
    const uint8_t *p = *at;
    const uint8_t b0 = p[0];
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (end - p < need + 1 || p[1] < lo || p[1] > hi) return 0;
    for (int k = 2; k <= need; k++) {
        if (p[k] < 0x80 || p[k] > 0xBF) return 0;
    }
    *at = p + need + 1;
    return 1;
}

/* The closing quote of a string whose first byte is at p, or NULL; *escaped tells whether it held an escape. */
static inline const uint8_t *j_string(const uint8_t *p, const uint8_t *end, int *escaped) {
    for (;;) {
#ifdef __SSE2__
        while (end - p >= 16) {
            const __m128i v = _mm_loadu_si128((const __m128i *)p);
            const __m128i special = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                _mm_cmplt_epi8(v, _mm_set1_epi8(0x20))); /* signed: control bytes and every byte >= 0x80 */
            const int mask = _mm_movemask_epi8(special);
            if (mask) {
                p += __builtin_ctz((unsigned)mask);
                break;
            }
            p += 16;
        }
#endif
        if (p >= end) return NULL;
        const uint8_t ch = *p;
        if (ch == '"') return p;
        if (ch >= 0x20 && ch < 0x80 && ch != '\\') {
            p++;
            continue;
        }
        if (ch == '\\') {
            *escaped = 1;
            if (end - p < 2) return NULL;
            const uint8_t e = p[1];
            if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                p += 2;
                continue;
            }
            /* orjson writes other control characters as \u00xx, lowercase; nothing else is escaped */
            if (e != 'u' || end - p < 6 || p[2] != '0' || p[3] != '0' || (p[4] != '0' && p[4] != '1')) return NULL;
            int v;
            if (p[5] >= '0' && p[5] <= '9') {
                v = p[5] - '0';
            } else if (p[5] >= 'a' && p[5] <= 'f') {
                v = p[5] - 'a' + 10;
            } else {
                return NULL;
            }
            v += 16 * (p[4] - '0');
            if (v == 8 || v == 9 || v == 10 || v == 12 || v == 13) return NULL;
            p += 6;
            continue;
        }
        if (ch < 0x20 || !utf8_sequence(&p, end)) return NULL;
    }
}

typedef struct {
    const uint8_t *key; /* the previous key of an object (NULL before the first); unused for arrays */
    size_t keylen;
    uint8_t close;      /* '}' or ']' */
} jframe;

enum { J_FAIL = -1, J_VALUE, J_KEY, J_AFTER, J_OK };

/* A canonical-JSON check that can stop at a token boundary once it passes a byte and go on later: the scan
 * runs it a slice at a time between SHA-256 blocks, so the parsing fills the time the SHA unit waits. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    int depth;
    int state;
    jframe stack[MAX_DEPTH];
} jparse;

static void jp_init(jparse *j, const uint8_t *p, Py_ssize_t n) {
    j->p = p;
    j->end = p + n;
    j->depth = 0;
    j->state = J_VALUE;
}

/* Parse until a token starts at or past `limit` (or the end); returns the state: J_OK, J_FAIL or where to go on. */
static int jp_run(jparse *j, const uint8_t *limit) {
    const uint8_t *p = j->p;
    const uint8_t *const end = j->end;
    jframe *const stack = j->stack;
    int depth = j->depth;
    int escaped = 0;
    switch (j->state) {
    case J_VALUE:
        goto value;
    case J_KEY:
        goto key;
    case J_AFTER:
        goto after;
    default:
        return j->state;
    }
pause:
    j->p = p;
    j->depth = depth;
    return j->state;
fail:
    return j->state = J_FAIL;
value:
    if (p >= limit) {
        j->state = J_VALUE;
        goto pause;
    }
    switch (*p) {
    case '{':
    case '[':
        if (depth == MAX_DEPTH) goto fail;
        stack[depth].close = *p == '{' ? '}' : ']';
        stack[depth].key = NULL;
        depth++;
        p++;
        if (p < end && *p == stack[depth - 1].close) {
            p++;
            depth--;
            goto after;
        }
        if (stack[depth - 1].close == ']') goto value;
        goto key;
    case '"':
        p = j_string(p + 1, end, &escaped);
        if (!p) goto fail;
        p++;
        goto after;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0) goto fail;
        p += 4;
        goto after;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0) goto fail;
        p += 5;
        goto after;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0) goto fail;
        p += 4;
        goto after;
    default: {
        const int negative = *p == '-';
        if (negative) p++;
        if (p >= end) goto fail;
        if (*p == '0') {
            if (negative) goto fail; /* -0 reads back as 0 */
            p++;
        } else if (*p >= '1' && *p <= '9') {
            const uint8_t *first = p;
            while (p < end && *p >= '0' && *p <= '9') p++;
            if (p - first > MAX_DIGITS) goto fail;
        } else {
            goto fail;
        }
        if (p < end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9'))) goto fail;
        goto after;
    }
    }
key:
    if (p >= limit) {
        j->state = J_KEY;
        goto pause;
    }
    if (*p != '"') goto fail;
    {
        const uint8_t *start = p + 1;
        escaped = 0;
        const uint8_t *stop = j_string(start, end, &escaped);
        if (!stop || escaped) goto fail;
        const size_t len = (size_t)(stop - start);
        jframe *f = &stack[depth - 1];
        if (f->key) {
            size_t k = 0;
            const size_t common = f->keylen < len ? f->keylen : len;
            while (k < common && f->key[k] == start[k]) k++;
            if (k < common ? f->key[k] > start[k] : f->keylen >= len) goto fail;
        }
        f->key = start;
        f->keylen = len;
        p = stop + 1;
        if (p >= end || *p != ':') goto fail;
        p++;
        goto value;
    }
after:
    if (depth == 0) return j->state = p == end ? J_OK : J_FAIL;
    if (p >= limit) {
        j->state = J_AFTER;
        goto pause;
    }
    if (*p == ',') {
        p++;
        if (stack[depth - 1].close == '}') goto key;
        goto value;
    }
    if (*p != stack[depth - 1].close) goto fail;
    p++;
    depth--;
    goto after;
}

static int canonical_json(const uint8_t *p, Py_ssize_t n) {
    jparse j;
    jp_init(&j, p, n);
    return jp_run(&j, j.end) == J_OK;
}

/* SHA-256 of two padded messages, interleaved while both have blocks left, with the canonical-JSON check of
 * the line run a slice after each pair of blocks (the parsing fills the time the SHA unit waits). */
static void hash_pair(const uint8_t *ma, size_t ba, uint8_t outa[32], const uint8_t *mb, size_t bb,
                      uint8_t outb[32], jparse *json) {
    uint32_t sa[8], sb[8];
    memcpy(sa, H256, sizeof sa);
    memcpy(sb, H256, sizeof sb);
    const size_t both = ba < bb ? ba : bb;
    const Py_ssize_t step = (json->end - json->p) / (Py_ssize_t)(both + 1) + 1;
    const uint8_t *limit = json->p;
    for (size_t k = 0; k < both; k++) {
        compress2(sa, ma + 64 * k, sb, mb + 64 * k, 1);
        limit += step;
        if (json->state >= J_VALUE && json->state <= J_AFTER) jp_run(json, limit < json->end ? limit : json->end);
    }
    if (ba > both) compress(sa, ma + 64 * both, ba - both);
    if (bb > both) compress(sb, mb + 64 * both, bb - both);
    for (int k = 0; k < 8; k++) {
        for (int i = 0; i < 4; i++) {
            outa[4 * k + i] = (uint8_t)(sa[k] >> (24 - 8 * i));
            outb[4 * k + i] = (uint8_t)(sb[k] >> (24 - 8 * i));
        }
    }
}

/* ---------------------------------------------------------------------------------------------------- */
/* The scan                                                                                              */

static const char HEX[] = "0123456789abcdef";
#define ACTOR "{\"actor\":"
#define AGENT "\",\"agent\":\""
#define HASHKEY ",\"hash\":\"sha256:"
#define PREVKEY "\",\"prev\":\""
#define SEQKEY "\",\"seq\":"
#define SEALED_END "\"type\":\"agent.sealed\"}" /* how a seal record ends: type is its last key */
#define SLEN(s) (sizeof(s) - 1)
#define HLEN 71 /* "sha256:" + 64 hex digits */

typedef struct {
    const uint8_t *name;
    Py_ssize_t len;
    long long seq;
    int used;
} seal_slot;

typedef struct {
    seal_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
} seal_table;

static uint64_t fnv1a(const uint8_t *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t k = 0; k < n; k++) h = (h ^ p[k]) * 1099511628211ULL;
    return h;
}

/* Whether `name` is sealed; its seal's seq goes to *at. */
static int seal_lookup(const seal_table *t, const uint8_t *name, Py_ssize_t len, long long *at) {
    if (!t->slots) return 0;
    for (size_t k = fnv1a(name, len) & t->mask;; k = (k + 1) & t->mask) {
        const seal_slot *s = &t->slots[k];
        if (!s->used) return 0;
        if (s->len == len && memcmp(s->name, name, (size_t)len) == 0) {
            *at = s->seq;
            return 1;
        }
    }
}

typedef struct {
    uint8_t node[32];
    int level;
} emitted_t;

typedef struct {
    long long count;
    size_t emitted;
    size_t local;
    uint8_t (*frontier)[32];
    uint8_t last_h[HLEN];
} capture_t;

typedef struct {
    /* inputs */
    const uint8_t *buf;
    Py_ssize_t len;
    Py_ssize_t pos;
    long long offset;
    const long long *targets; /* sorted, all > offset */
    size_t ntargets;
    const seal_table *sealed;
    int watch_seal;
    long long expect_seq; /* -1: any */
    const uint8_t *expect_prev; /* NULL: any; else HLEN bytes */
    /* outputs */
    long long count;
    long long seq0;
    uint8_t prev0[HLEN];
    uint8_t last_h[HLEN];
    Py_ssize_t end;
    emitted_t *emitted;
    size_t nemitted, capemitted;
    uint8_t local[64][32];
    size_t nlocal;
    capture_t *captures;
    size_t ncaptures;
    uint8_t *msga, *msgb; /* the two padded messages of a record */
    size_t msgcap;
    jparse json; /* the canonical-JSON check of the record being hashed */
    int nomem;
} scan_t;

/* The last `,"hash":"sha256:` in the line (found by its 'h': hex digits have none, so few stops). */
static const uint8_t *find_hash_key(const uint8_t *raw, Py_ssize_t n) {
    const uint8_t *end = raw + n;
    const uint8_t *h;
    while ((h = memrchr(raw, 'h', (size_t)(end - raw))) != NULL) {
        if (h - raw >= 2 && (raw + n) - (h - 2) >= (Py_ssize_t)SLEN(HASHKEY) &&
            memcmp(h - 2, HASHKEY, SLEN(HASHKEY)) == 0) {
            return h - 2;
        }
        end = h;
    }
    return NULL;
}

/* Whether a JSON string starting at p (after its opening quote) ends before `end` without an escape; sets *close. */
static int plain_string(const uint8_t *p, const uint8_t *end, const uint8_t **close) {
    for (; p < end; p++) {
        if (*p == '"') {
            *close = p;
            return 1;
        }
        if (*p == '\\') return 0;
    }
    return 0;
}

/* Whether the run must stop at this record because of seals: a seal record, an escaped or oddly placed agent
 * name while agents are sealed, or a record for an agent sealed before it. */
static int seal_stop(const scan_t *s, const uint8_t *raw, Py_ssize_t n, long long seq) {
    if (s->watch_seal && n >= (Py_ssize_t)SLEN(SEALED_END) &&
        memcmp(raw + n - SLEN(SEALED_END), SEALED_END, SLEN(SEALED_END)) == 0) {
        return 1;
    }
    if (!s->sealed->slots) return 0;
    const uint8_t *end = raw + n, *close;
    if (raw[SLEN(ACTOR)] != '"') return 1;
    if (!plain_string(raw + SLEN(ACTOR) + 1, end, &close)) return 1;
    if (end - close < (Py_ssize_t)SLEN(AGENT) || memcmp(close, AGENT, SLEN(AGENT)) != 0) return 1;
    const uint8_t *name = close + SLEN(AGENT);
    if (!plain_string(name, end, &close)) return 1;
    long long at;
    return seal_lookup(s->sealed, name, close - name, &at) && seq > at;
}

/* `","prev":"<hash>","seq":<next>,`: how the next record must continue; returns its length. */
static size_t make_link(char *out, const uint8_t hash[HLEN], long long next) {
    char digits[24];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + next % 10);
        next /= 10;
    } while (next);
    size_t k = 0;
    memcpy(out, PREVKEY, SLEN(PREVKEY));
    k += SLEN(PREVKEY);
    memcpy(out + k, hash, HLEN);
    k += HLEN;
    memcpy(out + k, SEQKEY, SLEN(SEQKEY));
    k += SLEN(SEQKEY);
    while (nd) out[k++] = digits[--nd];
    out[k++] = ',';
    return k;
}

static int push_emitted(scan_t *s, const uint8_t node[32], int level) {
    if (s->nemitted == s->capemitted) {
        size_t cap = s->capemitted ? 2 * s->capemitted : 16;
        emitted_t *grown = realloc(s->emitted, cap * sizeof *grown);
        if (!grown) return 0;
        s->emitted = grown;
        s->capemitted = cap;
    }
    memcpy(s->emitted[s->nemitted].node, node, 32);
    s->emitted[s->nemitted].level = level;
    s->nemitted++;
    return 1;
}

static void run_scan(scan_t *s) {
    const uint8_t *buf = s->buf;
    Py_ssize_t pos = s->pos;
    long long count = s->offset;
    long long seq = -1;
    size_t next_target = 0;
    char link[SLEN(PREVKEY) + HLEN + SLEN(SEQKEY) + 24];
    size_t linklen = 0;
    s->seq0 = -1;
    s->end = pos;
    while (pos < s->len) {
        const uint8_t *raw = buf + pos;
        const uint8_t *nl = memchr(raw, '\n', (size_t)(s->len - pos));
        Py_ssize_t n = nl ? nl - raw : s->len - pos;
        Py_ssize_t after = nl ? pos + n + 1 : s->len;
        if (n < (Py_ssize_t)SLEN(ACTOR) + 2 || memcmp(raw, ACTOR, SLEN(ACTOR)) != 0 || raw[n - 2] != '"' ||
            raw[n - 1] != '}') {
            break;
        }
        const uint8_t *hk = find_hash_key(raw, n);
        if (!hk || hk == raw) break;
        Py_ssize_t i = hk - raw;
        if (linklen) {
            if (n < i + 80 + (Py_ssize_t)linklen || memcmp(raw + i + 80, link, linklen) != 0) break;
            seq++;
        } else {
            if (n < i + 170 || memcmp(raw + i + 80, PREVKEY, SLEN(PREVKEY)) != 0 ||
                memcmp(raw + i + 161, SEQKEY, SLEN(SEQKEY)) != 0) {
                break;
            }
            const uint8_t *comma = memchr(raw + i + 169, ',', (size_t)(n - i - 169));
            if (!comma) break;
            Py_ssize_t ndig = comma - (raw + i + 169);
            if (ndig < 1 || ndig > MAX_DIGITS || (raw[i + 169] == '0' && ndig != 1)) break;
            long long v = 0;
            int ok = 1;
            for (Py_ssize_t k = 0; k < ndig; k++) {
                uint8_t ch = raw[i + 169 + k];
                if (ch < '0' || ch > '9') {
                    ok = 0;
                    break;
                }
                v = v * 10 + (ch - '0');
            }
            if (!ok) break;
            if (s->expect_seq >= 0 && v != s->expect_seq) break;
            if (s->expect_prev && memcmp(raw + i + 90, s->expect_prev, HLEN) != 0) break;
            seq = v;
        }
        /* the record hash, SHA-256 of the line without its "hash" member, and the Merkle leaf,
         * SHA-256(0x00 || line), computed side by side */
        if ((size_t)n + 160 > s->msgcap) {
            size_t cap = 2 * ((size_t)n + 160);
            uint8_t *a = realloc(s->msga, cap), *b = a ? realloc(s->msgb, cap) : NULL;
            if (a) s->msga = a;
            if (!a || !b) {
                s->nomem = 1;
                return;
            }
            s->msgb = b;
            s->msgcap = cap;
        }
        static const uint8_t zero = 0;
        const uint8_t *record_parts[2] = {raw, raw + i + 81};
        const size_t record_lens[2] = {(size_t)i, n > i + 81 ? (size_t)(n - i - 81) : 0};
        const uint8_t *leaf_parts[2] = {&zero, raw};
        const size_t leaf_lens[2] = {1, (size_t)n};
        size_t ba = pad_message(s->msga, record_parts, record_lens, 2);
        size_t bb = pad_message(s->msgb, leaf_parts, leaf_lens, 2);
        uint8_t digest[32], node[32];
        jparse *const json = &s->json;
        jp_init(json, raw, n);
        hash_pair(s->msga, ba, digest, s->msgb, bb, node, json);
        const uint8_t *stored = raw + i + 16;
        int match = 1;
        for (int k = 0; k < 32; k++) {
            if (stored[2 * k] != (uint8_t)HEX[digest[k] >> 4] || stored[2 * k + 1] != (uint8_t)HEX[digest[k] & 15]) {
                match = 0;
                break;
            }
        }
        if (!match || jp_run(json, json->end) != J_OK) break;
        if (seal_stop(s, raw, n, seq)) break;
        if (!linklen) memcpy(s->prev0, raw + i + 90, HLEN), s->seq0 = seq;
        memcpy(s->last_h, raw + i + 9, HLEN);
        linklen = make_link(link, s->last_h, seq + 1);
        /* the leaf joins the frontier */
        long long m = count;
        int level = 0;
        while ((m & 1) && s->nlocal) {
            node_hash(s->local[--s->nlocal], node, node);
            m >>= 1;
            level++;
        }
        if (m & 1) {
            if (!push_emitted(s, node, level)) {
                s->nomem = 1;
                return;
            }
        } else {
            memcpy(s->local[s->nlocal++], node, 32);
        }
        count++;
        pos = after;
        s->end = pos;
        s->count = count - s->offset;
        if (next_target < s->ntargets && count == s->targets[next_target]) {
            capture_t *c = &s->captures[s->ncaptures];
            c->count = count;
            c->emitted = s->nemitted;
            c->local = s->nlocal;
            c->frontier = malloc((s->nlocal ? s->nlocal : 1) * 32);
            if (!c->frontier) {
                s->nomem = 1;
                return;
            }
            memcpy(c->frontier, s->local, s->nlocal * 32);
            memcpy(c->last_h, s->last_h, HLEN);
            s->ncaptures++;
            next_target++;
        }
    }
    s->count = count - s->offset;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static PyObject *node_bytes(const uint8_t node[32]) { return PyBytes_FromStringAndSize((const char *)node, 32); }

static PyObject *build_result(const scan_t *s) {
    PyObject *emitted = PyList_New((Py_ssize_t)s->nemitted);
    PyObject *local = PyList_New((Py_ssize_t)s->nlocal);
    PyObject *captures = PyList_New((Py_ssize_t)s->ncaptures);
    if (!emitted || !local || !captures) goto fail;
    for (size_t k = 0; k < s->nemitted; k++) {
        PyObject *item = Py_BuildValue("(iN)", s->emitted[k].level, node_bytes(s->emitted[k].node));
        if (!item) goto fail;
        PyList_SET_ITEM(emitted, (Py_ssize_t)k, item);
    }
    for (size_t k = 0; k < s->nlocal; k++) {
        PyObject *item = node_bytes(s->local[k]);
        if (!item) goto fail;
        PyList_SET_ITEM(local, (Py_ssize_t)k, item);
    }
    for (size_t k = 0; k < s->ncaptures; k++) {
        const capture_t *c = &s->captures[k];
        PyObject *frontier = PyTuple_New((Py_ssize_t)c->local);
        if (!frontier) goto fail;
        for (size_t j = 0; j < c->local; j++) {
            PyObject *item = node_bytes(c->frontier[j]);
            if (!item) {
                Py_DECREF(frontier);
                goto fail;
            }
            PyTuple_SET_ITEM(frontier, (Py_ssize_t)j, item);
        }
        PyObject *item = Py_BuildValue("(LnNy#)", c->count, (Py_ssize_t)c->emitted, frontier, (const char *)c->last_h,
                                       (Py_ssize_t)HLEN);
        if (!item) goto fail;
        PyList_SET_ITEM(captures, (Py_ssize_t)k, item);
    }
    int have = s->count > 0;
    return Py_BuildValue("(LLy#y#NNNn)", s->count, have ? s->seq0 : -1LL, (const char *)s->prev0,
                         (Py_ssize_t)(have ? HLEN : 0), (const char *)s->last_h, (Py_ssize_t)(have ? HLEN : 0),
                         emitted, local, captures, s->end);
fail:
    Py_XDECREF(emitted);
    Py_XDECREF(local);
    Py_XDECREF(captures);
    return NULL;
}

PyDoc_STRVAR(scan_doc,
             "scan(block, pos, offset, targets, sealed, watch_seal, expect_seq, expect_prev)\n--\n\n"
             "Hash and link-check the longest run of regular records of `block` from byte `pos`, as Merkle leaves\n"
             "from index `offset`. Returns (count, seq0, prev0, last_h, emitted, local, captures, end).");

static PyObject *py_scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    long long offset;
    PyObject *targets_obj, *sealed_obj, *expect_seq_obj, *expect_prev_obj;
    int watch_seal;
    if (!PyArg_ParseTuple(args, "y*nLOO!pOO", &view, &pos, &offset, &targets_obj, &PyDict_Type, &sealed_obj,
                          &watch_seal, &expect_seq_obj, &expect_prev_obj)) {
        return NULL;
    }
    PyObject *result = NULL;
    PyObject *seq_targets = NULL;
    PyObject *sealed_items = NULL;
    long long *targets = NULL;
    seal_table table = {NULL, 0};
    scan_t s;
    memset(&s, 0, sizeof s);
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos is outside the block");
        goto done;
    }
    s.buf = view.buf;
    s.len = view.len;
    s.pos = pos;
    s.offset = offset;
    s.watch_seal = watch_seal;
    s.expect_seq = -1;
    if (expect_seq_obj != Py_None) {
        s.expect_seq = PyLong_AsLongLong(expect_seq_obj);
        if (s.expect_seq == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) goto done;
            PyErr_Clear();
            s.expect_seq = -2; /* beyond what the scan reads: no run starts */
        }
        if (s.expect_seq < 0) s.expect_seq = -2;
    }
    if (expect_prev_obj != Py_None) {
        if (!PyBytes_Check(expect_prev_obj)) {
            PyErr_SetString(PyExc_TypeError, "expect_prev must be bytes or None");
            goto done;
        }
        if (PyBytes_GET_SIZE(expect_prev_obj) != HLEN) {
            s.expect_seq = -2; /* no line can link to a hash of another length */
        } else {
            s.expect_prev = (const uint8_t *)PyBytes_AS_STRING(expect_prev_obj);
        }
    }
    if (s.expect_seq == -2) {
        s.end = pos;
        s.seq0 = -1;
        result = build_result(&s);
        goto done;
    }
    seq_targets = PySequence_Fast(targets_obj, "targets must be a sequence of ints");
    if (!seq_targets) goto done;
    Py_ssize_t nt = PySequence_Fast_GET_SIZE(seq_targets);
    targets = PyMem_Malloc((size_t)(nt ? nt : 1) * sizeof *targets);
    if (!targets) {
        PyErr_NoMemory();
        goto done;
    }
    size_t kept = 0;
    for (Py_ssize_t k = 0; k < nt; k++) {
        long long t = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq_targets, k));
        if (t == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) goto done;
            PyErr_Clear();
            continue; /* a size no block reaches */
        }
        if (t > offset) targets[kept++] = t;
    }
    qsort(targets, kept, sizeof *targets, cmp_ll);
    size_t uniq = 0;
    for (size_t k = 0; k < kept; k++) {
        if (!uniq || targets[uniq - 1] != targets[k]) targets[uniq++] = targets[k];
    }
    s.targets = targets;
    s.ntargets = uniq;
    s.captures = PyMem_Calloc(uniq ? uniq : 1, sizeof *s.captures);
    if (!s.captures) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t nsealed = PyDict_GET_SIZE(sealed_obj);
    if (nsealed) {
        size_t cap = 8;
        while (cap < 2 * (size_t)nsealed) cap <<= 1;
        table.slots = PyMem_Calloc(cap, sizeof *table.slots);
        if (!table.slots) {
            PyErr_NoMemory();
            goto done;
        }
        table.mask = cap - 1;
        sealed_items = PyDict_Items(sealed_obj); /* keeps every name alive while the GIL is released */
        if (!sealed_items) goto done;
        for (Py_ssize_t it = 0; it < PyList_GET_SIZE(sealed_items); it++) {
            PyObject *key = PyTuple_GET_ITEM(PyList_GET_ITEM(sealed_items, it), 0);
            PyObject *value = PyTuple_GET_ITEM(PyList_GET_ITEM(sealed_items, it), 1);
            if (!PyBytes_Check(key)) {
                PyErr_SetString(PyExc_TypeError, "sealed names must be bytes");
                goto done;
            }
            long long at = PyLong_AsLongLong(value);
            if (at == -1 && PyErr_Occurred()) goto done;
            const uint8_t *name = (const uint8_t *)PyBytes_AS_STRING(key);
            Py_ssize_t len = PyBytes_GET_SIZE(key);
            size_t k = fnv1a(name, len) & table.mask;
            while (table.slots[k].used) k = (k + 1) & table.mask;
            table.slots[k] = (seal_slot){name, len, at, 1};
        }
    }
    s.sealed = &table;
    Py_BEGIN_ALLOW_THREADS
    run_scan(&s);
    Py_END_ALLOW_THREADS
    if (s.nomem) {
        PyErr_NoMemory();
        goto done;
    }
    result = build_result(&s);
done:
    for (size_t k = 0; k < s.ncaptures; k++) free(s.captures[k].frontier);
    PyMem_Free(s.captures);
    free(s.emitted);
    free(s.msga);
    free(s.msgb);
    PyMem_Free(table.slots);
    PyMem_Free(targets);
    Py_XDECREF(seq_targets);
    Py_XDECREF(sealed_items);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(sha256_doc, "sha256(data, /)\n--\n\nThe SHA-256 digest of `data` by this module's implementation.");

static PyObject *py_sha256(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    sha_ctx ctx;
    uint8_t out[32];
    sha_init(&ctx);
    sha_update(&ctx, view.buf, (size_t)view.len);
    sha_final(&ctx, out);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

PyDoc_STRVAR(canonical_doc,
             "canonical(line, /)\n--\n\nTrue when `line` is provably canonical JSON as arxctl writes it; False when it\n"
             "is not or when this test cannot tell (floats, escaped keys, long integers): ask the full parser then.");

static PyObject *py_canonical(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const int ok = canonical_json(view.buf, view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

PyDoc_STRVAR(newlines_doc,
             "newlines(data, end, /)\n--\n\nHow many newline bytes `data[:end]` holds (bytes.count, vectorised).");

static PyObject *py_newlines(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t end;
    if (!PyArg_ParseTuple(args, "y*n", &view, &end)) return NULL;
    if (end < 0 || end > view.len) end = view.len;
    const uint8_t *p = view.buf;
    Py_ssize_t count = 0, k = 0;
    Py_BEGIN_ALLOW_THREADS
#ifdef __SSE2__
    const __m128i nl = _mm_set1_epi8('\n');
    for (; k + 64 <= end; k += 64) {
        const unsigned m0 = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + k)), nl));
        const unsigned m1 =
            (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + k + 16)), nl));
        const unsigned m2 =
            (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + k + 32)), nl));
        const unsigned m3 =
            (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + k + 48)), nl));
        count += __builtin_popcountll((unsigned long long)m0 | (unsigned long long)m1 << 16 |
                                      (unsigned long long)m2 << 32 | (unsigned long long)m3 << 48);
    }
#endif
    for (; k < end; k++) count += p[k] == '\n';
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

PyDoc_STRVAR(use_doc, "use(name, /)\n--\n\nSelect the SHA-256 code: 'sha-ni' (if the CPU has it) or 'portable'.\n"
                      "For tests: not to be called while a scan runs on another thread.");

static PyObject *py_use(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    if (strcmp(name, "portable") == 0) {
        compress = compress_portable;
        compress2 = compress2_portable;
        backend = "portable";
        Py_RETURN_NONE;
    }
#ifdef ARX_X86
    if (strcmp(name, "sha-ni") == 0 && cpu_has_shani()) {
        compress = compress_shani;
        compress2 = compress2_shani;
        backend = "sha-ni";
        Py_RETURN_NONE;
    }
#endif
    PyErr_Format(PyExc_ValueError, "SHA-256 code %R is not available here", arg);
    return NULL;
}

PyDoc_STRVAR(backend_doc, "backend()\n--\n\nThe SHA-256 code in use: 'sha-ni' or 'portable'.");

static PyObject *py_backend(PyObject *self, PyObject *unused) { return PyUnicode_FromString(backend); }

static PyMethodDef methods[] = {
    {"scan", py_scan, METH_VARARGS, scan_doc},
    {"sha256", py_sha256, METH_O, sha256_doc},
    {"canonical", py_canonical, METH_O, canonical_doc},
    {"newlines", py_newlines, METH_VARARGS, newlines_doc},
    {"use", py_use, METH_O, use_doc},
    {"backend", py_backend, METH_NOARGS, backend_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "arxctl.chain._native", "The bulk scan of chain verification, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
#ifdef ARX_X86
    if (cpu_has_shani()) {
        compress = compress_shani;
        compress2 = compress2_shani;
        backend = "sha-ni";
    }
#endif
    return PyModule_Create(&module);
}
