/* DynamicConv on the CPU, float32: the convolution with per-position kernels and its two gradients.
 *
 * Wu, Fan, Baevski, Dauphin & Auli, "Pay Less Attention with Lightweight and Dynamic Convolutions",
 * ICLR 2019, Eq. 4: y[b,t,c] = sum_k w[b,t,h,k] * x[b,t+k-left,c], h = c / R, R = C / H channels per head,
 * with x read as zero outside its rows. mlmyths.models.lightconv_ops compiles this file on first use
 * (mlmyths.native) and calls it through ctypes; without a C compiler it takes its band path instead.
 *
 * Layouts (all C-contiguous float32): x (B, Tx, C), kernels w (B, T, H, K), output gradient g (B, T, C).
 * Each function splits its rows (b, t) evenly between `threads` threads (OpenMP where the compiler has
 * it, else POSIX threads); every thread writes only its own rows, so no two threads touch the same memory.
 *
 * Why this is faster than batched matmuls: one output row needs K rows of x (or of g), which stay in
 * the L1/L2 cache while the K taps are summed, and the R channels of a head are one vector loop whose
 * accumulators the compiler keeps in registers (R is a compile-time constant for R = 8, 16, 32, 64).
 */
#include <pthread.h>
#include <stdint.h>

typedef struct {
    const float *x, *w, *g;
    float *out;
    int64_t B, Tx, T, C, H, K, left;
    int softmax, accumulate;
    int64_t first, last; /* rows first ... last-1 of the flattened (b, t) or (b, p) range */
} job;

#define INLINE static inline __attribute__((always_inline))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* y[b,t,:] = sum_k w[b,t,h,k] x[b,t+k-left,:], head by head */
INLINE void forward_row(const job *j, int64_t b, int64_t t, const int64_t R) {
    const int64_t C = j->C, H = j->H, K = j->K;
    const float *w = j->w + (b * j->T + t) * H * K;
    const int64_t x0 = (b * j->Tx + t - j->left) * C; /* offset of tap 0's row (may lie before the data) */
    float *y = j->out + (b * j->T + t) * C;
    const int64_t k0 = MAX(0, j->left - t), k1 = MIN(K, j->Tx + j->left - t);
    for (int64_t h = 0; h < H; h++) {
        float acc[R];
        for (int64_t r = 0; r < R; r++) acc[r] = 0.f;
        for (int64_t k = k0; k < k1; k++) {
            const float wk = w[h * K + k];
            const float *xk = j->x + x0 + k * C + h * R;
            for (int64_t r = 0; r < R; r++) acc[r] += wk * xk[r];
        }
        for (int64_t r = 0; r < R; r++) y[h * R + r] = acc[r];
    }
}

/* dL/dw[b,t,h,k] = <g[b,t,head h], x[b,t+k-left,head h]>; with softmax, then through the softmax over k
 * (w holds the softmax's output p): dL/dlogit = p * (dL/dp - sum_k p * dL/dp). */
INLINE void kernel_grad_row(const job *j, int64_t b, int64_t t, const int64_t R) {
    const int64_t C = j->C, H = j->H, K = j->K;
    const float *g = j->g + (b * j->T + t) * C;
    const int64_t x0 = (b * j->Tx + t - j->left) * C;
    const float *p = j->w + (b * j->T + t) * H * K;
    float *out = j->out + (b * j->T + t) * H * K;
    const int64_t k0 = MAX(0, j->left - t), k1 = MIN(K, j->Tx + j->left - t);
    for (int64_t h = 0; h < H; h++) {
        float *o = out + h * K;
        const float *gh = g + h * R;
        for (int64_t k = 0; k < k0; k++) o[k] = 0.f;
        for (int64_t k = k1; k < K; k++) o[k] = 0.f;
        for (int64_t k = k0; k < k1; k++) {
            const float *xk = j->x + x0 + k * C + h * R;
            float s = 0.f;
            for (int64_t r = 0; r < R; r++) s += gh[r] * xk[r];
            o[k] = s;
        }
        if (j->softmax) {
            const float *ph = p + h * K;
            float dot = 0.f;
            for (int64_t k = 0; k < K; k++) dot += ph[k] * o[k];
            for (int64_t k = 0; k < K; k++) o[k] = ph[k] * (o[k] - dot);
        }
    }
}

/* dL/dx[b,p,:] (+)= sum over the positions t whose window holds row p (tap k = p+left-t) of w[b,t,h,k] g[b,t,:] */
INLINE void input_grad_row(const job *j, int64_t b, int64_t p, const int64_t R) {
    const int64_t C = j->C, H = j->H, K = j->K, T = j->T, HK = H * K;
    float *out = j->out + (b * j->Tx + p) * C;
    const int64_t t0 = MAX(0, p + j->left - K + 1), t1 = MIN(T - 1, p + j->left);
    const int64_t w0 = b * T * HK + p + j->left; /* + t*(HK-1) + h*K: tap p+left-t of position t, head h */
    const float *g = j->g + b * T * C;
    for (int64_t h = 0; h < H; h++) {
        float acc[R];
        for (int64_t r = 0; r < R; r++) acc[r] = j->accumulate ? out[h * R + r] : 0.f;
        for (int64_t t = t0; t <= t1; t++) {
            const float wt = j->w[w0 + t * (HK - 1) + h * K];
            const float *gt = g + t * C + h * R;
            for (int64_t r = 0; r < R; r++) acc[r] += wt * gt[r];
        }
        for (int64_t r = 0; r < R; r++) out[h * R + r] = acc[r];
    }
}

#define ROWS(ROW, RR) for (int64_t i = j->first; i < j->last; i++) ROW(j, i / n, i % n, RR)
#define BY_WIDTH(ROW)                                                                                              \
    switch (R) {                                                                                                   \
    case 8: ROWS(ROW, 8); break;                                                                                   \
    case 16: ROWS(ROW, 16); break;                                                                                 \
    case 32: ROWS(ROW, 32); break;                                                                                 \
    case 64: ROWS(ROW, 64); break;                                                                                 \
    default: ROWS(ROW, R);                                                                                         \
    }

static void *forward_rows(void *arg) {
    const job *j = arg;
    const int64_t n = j->T, R = j->C / j->H;
    BY_WIDTH(forward_row)
    return 0;
}

static void *kernel_grad_rows(void *arg) {
    const job *j = arg;
    const int64_t n = j->T, R = j->C / j->H;
    BY_WIDTH(kernel_grad_row)
    return 0;
}

static void *input_grad_rows(void *arg) {
    const job *j = arg;
    const int64_t n = j->Tx, R = j->C / j->H;
    BY_WIDTH(input_grad_row)
    return 0;
}

#define MAX_THREADS 256

#ifdef _OPENMP
/* Built with OpenMP, the library uses the OpenMP runtime already in the process: PyTorch's, when it
 * ships GNU OpenMP (libgomp). Its worker threads then run these loops too, instead of spinning idle
 * beside threads of ours on the same cores. Static ranges: the same rows always go to one thread. */
static int run(void *(*work)(void *), job base, int64_t rows, int threads) {
    const int64_t total = base.B * rows;
    threads = (int)MAX(1, MIN(MIN(threads, MAX_THREADS), total));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < threads; i++) {
        job j = base;
        j.first = total * i / threads;
        j.last = total * (i + 1) / threads;
        work(&j);
    }
    return 0;
}
#else
/* Without OpenMP: POSIX threads, started per call. Returns -1 when a thread could not be started (its
 * rows are then done by the calling thread: the result is still whole). */
static int run(void *(*work)(void *), job base, int64_t rows, int threads) {
    job jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0}, status = 0;
    const int64_t total = base.B * rows;
    threads = (int)MAX(1, MIN(MIN(threads, MAX_THREADS), total));
    for (int i = 0; i < threads; i++) {
        jobs[i] = base;
        jobs[i].first = total * i / threads;
        jobs[i].last = total * (i + 1) / threads;
    }
    for (int i = 1; i < threads; i++) started[i] = pthread_create(&ids[i], 0, work, &jobs[i]) == 0;
    work(&jobs[0]);
    for (int i = 1; i < threads; i++) {
        if (started[i]) {
            pthread_join(ids[i], 0);
        } else {
            work(&jobs[i]);
            status = -1;
        }
    }
    return status;
}
#endif

int dynconv_forward(const float *x, const float *w, float *y, int64_t B, int64_t Tx, int64_t T, int64_t C, int64_t H,
                    int64_t K, int64_t left, int threads) {
    job j = {x, w, 0, y, B, Tx, T, C, H, K, left, 0, 0, 0, 0};
    return run(forward_rows, j, T, threads);
}

int dynconv_kernel_grad(const float *x, const float *w, const float *g, float *grad_w, int64_t B, int64_t Tx, int64_t T,
                        int64_t C, int64_t H, int64_t K, int64_t left, int softmax, int threads) {
    job j = {x, w, g, grad_w, B, Tx, T, C, H, K, left, softmax, 0, 0, 0};
    return run(kernel_grad_rows, j, T, threads);
}

int dynconv_input_grad(const float *w, const float *g, float *grad_x, int64_t B, int64_t Tx, int64_t T, int64_t C,
                       int64_t H, int64_t K, int64_t left, int accumulate, int threads) {
    job j = {0, w, g, grad_x, B, Tx, T, C, H, K, left, 0, accumulate, 0, 0};
    return run(input_grad_rows, j, Tx, threads);
}
