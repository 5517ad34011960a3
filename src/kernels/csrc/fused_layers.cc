// Tiny-DarkNet's training-mode layers as MindSpore AOT custom ops for the CPU, split over the
// channels between the threads of a zoo::Pool (thread_pool.h): BatchNorm followed by leaky ReLU
// (darknet's "batch_normalize=1, leaky"; forward and gradient, each two passes over the
// activation) and the 2x2 max-pool (below).
//
// Per channel c, over the M = N*H*W values x of the batch:
//   mean = sum(x) / M       var = sum((x - mean)^2) / M       istd = 1 / sqrt(var + eps)
//   b = gamma * istd * (x - mean) + beta        y = b > 0 ? b : slope * b
//   moving_mean = keep * moving_mean + (1 - keep) * mean
//   moving_var  = keep * moving_var  + (1 - keep) * var * M / (M - 1)     (unbiased, as
//   MindSpore's BatchNorm and PyTorch's update it; keep = 0.9 for nn.BatchNorm2d(momentum=0.9))
// Gradient, with g = dy * (b > 0 ? 1 : slope):
//   dbeta = sum(g)      dgamma = istd * sum(g * (x - mean))
//   dx = gamma * istd * (g - dbeta / M - (x - mean) * istd * dgamma / M)
// MindSpore's graph runs this as BatchNorm + 4 element-wise kernels forward and BatchNormGrad +
// 4 backward (each a pass over memory and a dispatch); here it is one kernel each way.
//
// The forward writes the moving statistics in place into its inputs moving_mean / moving_var (the
// BatchNorm layer's parameters), as MindSpore's own BatchNorm kernel does.
//
// AOT calling convention (MindSpore 2.x): params = inputs then outputs, float32, contiguous;
// return 0 on success.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

#include "thread_pool.h"

namespace {

constexpr int kLanes = 16;  // partial sums per block: the inner loops vectorise without -ffast-math
constexpr int64_t kChunk = 256;  // values summed in float before they are added in double

// Adds the sums over k < count of f(k, &a, &b)'s two values to *sa and *sb: kLanes partial sums
// in float (the inner loop vectorises without -ffast-math), added in double every kChunk values.
// f captures by value: through a reference the compiler does not vectorise.
template <class F>
void lane_sums(int64_t count, F f, double *sa, double *sb) {
  for (int64_t start = 0; start < count; start += kChunk) {
    const int64_t end = start + kChunk < count ? start + kChunk : count;
    float la[kLanes] = {0}, lb[kLanes] = {0};
    int64_t k = start;
    for (; k + kLanes <= end; k += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        float a, b;
        f(k + j, &a, &b);
        la[j] += a;
        lb[j] += b;
      }
    for (; k < end; ++k) {
      float a, b;
      f(k, &a, &b);
      la[0] += a;
      lb[0] += b;
    }
    for (int j = 0; j < kLanes; ++j) {
      *sa += la[j];
      *sb += lb[j];
    }
  }
}

// sum(a[k] - shift) and sum((a[k] - shift)^2) over count values, added to *s and *q
void sums(const float *__restrict a, int64_t count, float shift, double *s, double *q) {
  lane_sums(count, [=](int64_t k, float *d, float *d2) {
    *d = a[k] - shift;
    *d2 = *d * *d;
  }, s, q);
}

// sum(g) and sum(g * (x - mean)) over count values, g = dy * leaky'((x - mean) * scale + beta)
void grad_sums(const float *__restrict x, const float *__restrict dy, int64_t count, float scale,
               float beta, float mean, float slope, double *sg, double *sgx) {
  lane_sums(count, [=](int64_t k, float *g, float *gx) {
    const float v = x[k] - mean;
    *g = dy[k] * (v * scale + beta > 0.0f ? 1.0f : slope);
    *gx = *g * v;
  }, sg, sgx);
}

// y = leaky((x - mean) * scale + beta) over count values (the loops take their scalars by
// value: the compiler vectorises them only then). x - mean first: mean * scale would cancel
// against beta when |mean| >> std.
void normalise(const float *__restrict x, float *__restrict y, int64_t count, float mean,
               float scale, float beta, float slope) {
  for (int64_t k = 0; k < count; ++k) {
    const float b = (x[k] - mean) * scale + beta;
    y[k] = b * (b > 0.0f ? 1.0f : slope);
  }
}

// dx = scale * (g - mg - (x - mean) * mgx), g = dy * leaky'((x - mean) * scale + beta)
void input_grad(const float *__restrict x, const float *__restrict dy, float *__restrict dx,
                int64_t count, float scale, float beta, float slope, float mean, float mg,
                float mgx) {
  for (int64_t k = 0; k < count; ++k) {
    const float v = x[k] - mean;
    const float g = dy[k] * (v * scale + beta > 0.0f ? 1.0f : slope);
    dx[k] = scale * (g - mg - v * mgx);
  }
}

struct Layout {
  int64_t n = 0, c = 0, hw = 1;
};

// x (N, C, ...) and the per-channel vectors at the given parameter indices (C,); hyper (3,)
int layout(int nparam, int expected, const int *ndims, int64_t *const *shapes,
           std::initializer_list<int> vectors, int hyper, Layout *out) {
  if (nparam != expected || ndims[0] < 2) return 1;
  out->n = shapes[0][0];
  out->c = shapes[0][1];
  out->hw = 1;
  for (int i = 2; i < ndims[0]; ++i) out->hw *= shapes[0][i];
  for (int v : vectors)
    if (ndims[v] != 1 || shapes[v][0] != out->c) return 2;
  if (ndims[hyper] != 1 || shapes[hyper][0] != 3) return 2;
  return 0;
}

bool float32(int nparam, const char **dtypes) {
  for (int i = 0; i < nparam; ++i)
    if (!dtypes || !dtypes[i] || std::strcmp(dtypes[i], "float32") != 0) return false;
  return true;
}

}  // namespace

// inputs x, gamma, beta, moving_mean, moving_var, hyper (eps, keep, slope); outputs y, mean,
// istd (the batch statistics the gradient reads); moving_mean / moving_var updated in place
extern "C" int BnLeakyForward(int nparam, void **params, int *ndims, int64_t **shapes,
                              const char **dtypes, void *, void *) {
  Layout d;
  if (const int error = layout(nparam, 9, ndims, shapes, {1, 2, 3, 4, 7, 8}, 5, &d)) return error;
  if (!float32(nparam, dtypes)) return 3;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  float *moving_mean = static_cast<float *>(params[3]);
  float *moving_var = static_cast<float *>(params[4]);
  const float *hyper = static_cast<const float *>(params[5]);
  float *y = static_cast<float *>(params[6]);
  float *mean_out = static_cast<float *>(params[7]);
  float *istd_out = static_cast<float *>(params[8]);
  const float eps = hyper[0], keep = hyper[1], slope = hyper[2];
  const int64_t count = d.n * d.hw;
  if (count == 0) return 0;
  zoo::parallel_ranges(d.c, d.n * d.c * d.hw, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      // sums of x - x[0] (shifted: no cancellation when |mean| >> std)
      const float shift = x[c * d.hw];
      double s = 0.0, q = 0.0;
      for (int64_t i = 0; i < d.n; ++i) sums(x + (i * d.c + c) * d.hw, d.hw, shift, &s, &q);
      const double centred = s / count;
      double var = q / count - centred * centred;
      if (!(var > 0.0)) var = var != var ? var : 0.0;  // rounding below 0 -> 0; NaN stays
      const double mean = shift + centred;
      const float istd = static_cast<float>(1.0 / std::sqrt(var + eps));
      mean_out[c] = static_cast<float>(mean);
      istd_out[c] = istd;
      const double unbiased = count > 1 ? var * count / (count - 1) : var;
      moving_mean[c] = static_cast<float>(keep * moving_mean[c] + (1.0 - keep) * mean);
      moving_var[c] = static_cast<float>(keep * moving_var[c] + (1.0 - keep) * unbiased);
      const float scale = gamma[c] * istd;
      for (int64_t i = 0; i < d.n; ++i) {
        const int64_t at = (i * d.c + c) * d.hw;
        normalise(x + at, y + at, d.hw, mean_out[c], scale, beta[c], slope);
      }
    }
  });
  return 0;
}

// inputs x, gamma, beta, mean, istd (the forward's outputs), hyper, dy; outputs dx, dgamma,
// dbeta, and zeros for moving_mean, moving_var and hyper (the bprop returns one gradient per
// input of the forward; made here, not by three more kernels)
extern "C" int BnLeakyBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                               const char **dtypes, void *, void *) {
  Layout d;
  if (const int error = layout(nparam, 13, ndims, shapes, {1, 2, 3, 4, 8, 9, 10, 11}, 5, &d))
    return error;
  if (ndims[6] != ndims[0] || ndims[7] != ndims[0] || ndims[12] != 1 || shapes[12][0] != 3)
    return 2;
  for (int i = 0; i < ndims[0]; ++i)
    if (shapes[6][i] != shapes[0][i] || shapes[7][i] != shapes[0][i]) return 2;
  if (!float32(nparam, dtypes)) return 3;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float *mean_in = static_cast<const float *>(params[3]);
  const float *istd_in = static_cast<const float *>(params[4]);
  const float *hyper = static_cast<const float *>(params[5]);
  const float *dy = static_cast<const float *>(params[6]);
  float *dx = static_cast<float *>(params[7]);
  float *dgamma = static_cast<float *>(params[8]);
  float *dbeta = static_cast<float *>(params[9]);
  for (int i = 10; i < 13; ++i) std::memset(params[i], 0, shapes[i][0] * sizeof(float));
  const float slope = hyper[2];
  const int64_t count = d.n * d.hw;
  zoo::parallel_ranges(d.c, d.n * d.c * d.hw, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float mean = mean_in[c], istd = istd_in[c];
      const float scale = gamma[c] * istd;  // the forward's b = (x - mean) * scale + beta
      double sg = 0.0, sgx = 0.0;
      for (int64_t i = 0; i < d.n; ++i) {
        const int64_t at = (i * d.c + c) * d.hw;
        grad_sums(x + at, dy + at, d.hw, scale, beta[c], mean, slope, &sg, &sgx);
      }
      dbeta[c] = static_cast<float>(sg);
      dgamma[c] = static_cast<float>(sgx * istd);
      if (count == 0) continue;
      const float mg = static_cast<float>(sg / count);
      const float mgx = static_cast<float>(sgx / count) * istd * istd;  // dgamma istd / M
      for (int64_t i = 0; i < d.n; ++i) {
        const int64_t at = (i * d.c + c) * d.hw;
        input_grad(x + at, dy + at, dx + at, d.hw, scale, beta[c], slope, mean, mg, mgx);
      }
    }
  });
  return 0;
}

// ---------------------------------------------------------------------------------------------
// 2x2 max-pool, stride 2, no padding (floor: a trailing odd row / column is dropped), NCHW.
// The gradient goes to the first maximum of each window (row-major order), as MindSpore's and
// PyTorch's max-pool gradients do; a NaN in a window is its maximum (it reaches the loss).
namespace {

// branchless (random data puts the maximum anywhere: branches would mispredict half the time)
inline float max4(float a, float b, float c, float d) {
  const float ab = b > a ? b : a, cd = d > c ? d : c, m = cd > ab ? cd : ab;
  const bool nan = (a != a) | (b != b) | (c != c) | (d != d);
  return nan ? a + b + c + d : m;  // a NaN in the window: NaN
}

inline bool same(float a, float m) { return (a == m) | ((a != a) & (m != m)); }

void pool_rows(const float *__restrict x, float *__restrict y, int64_t w, int64_t ow) {
  // one output row from two input rows
  const float *__restrict r0 = x, *__restrict r1 = x + w;
  for (int64_t j = 0; j < ow; ++j) y[j] = max4(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]);
}

void unpool_rows(const float *__restrict x, const float *__restrict y, const float *__restrict dy,
                 float *__restrict dx, int64_t w, int64_t ow) {
  const float *__restrict r0 = x, *__restrict r1 = x + w;
  float *__restrict d0 = dx, *__restrict d1 = dx + w;
  for (int64_t j = 0; j < ow; ++j) {
    const float m = y[j], g = dy[j];
    const bool a = same(r0[2 * j], m);
    const bool b = !a & same(r0[2 * j + 1], m);
    const bool c = !(a | b) & same(r1[2 * j], m);
    const bool d = !(a | b | c);
    d0[2 * j] = a ? g : 0.0f;
    d0[2 * j + 1] = b ? g : 0.0f;
    d1[2 * j] = c ? g : 0.0f;
    d1[2 * j + 1] = d ? g : 0.0f;
  }
}

int pool_layout(int nparam, int expected, const int *ndims, int64_t *const *shapes, int64_t *planes,
                int64_t *h, int64_t *w) {
  if (nparam != expected || ndims[0] != 4) return 1;
  *planes = shapes[0][0] * shapes[0][1];
  *h = shapes[0][2];
  *w = shapes[0][3];
  return 0;
}

}  // namespace

// inputs x (N, C, H, W); output y (N, C, H / 2, W / 2)
extern "C" int MaxPool2x2Forward(int nparam, void **params, int *ndims, int64_t **shapes,
                                 const char **dtypes, void *, void *) {
  int64_t planes, h, w;
  if (const int error = pool_layout(nparam, 2, ndims, shapes, &planes, &h, &w)) return error;
  if (!float32(nparam, dtypes)) return 3;
  const int64_t oh = h / 2, ow = w / 2;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  zoo::parallel_ranges(planes, planes * h * w, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t i = 0; i < oh; ++i) pool_rows(x + (p * h + 2 * i) * w, y + (p * oh + i) * ow, w, ow);
  });
  return 0;
}

// inputs x, y (the forward's output), dy; output dx
extern "C" int MaxPool2x2Backward(int nparam, void **params, int *ndims, int64_t **shapes,
                                  const char **dtypes, void *, void *) {
  int64_t planes, h, w;
  if (const int error = pool_layout(nparam, 4, ndims, shapes, &planes, &h, &w)) return error;
  if (!float32(nparam, dtypes)) return 3;
  const int64_t oh = h / 2, ow = w / 2;
  const float *x = static_cast<const float *>(params[0]);
  const float *y = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  zoo::parallel_ranges(planes, planes * h * w, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float *plane = dx + p * h * w;
      if (h % 2 || w % 2) std::memset(plane, 0, h * w * sizeof(float));  // dropped rows / columns
      for (int64_t i = 0; i < oh; ++i)
        unpool_rows(x + (p * h + 2 * i) * w, y + (p * oh + i) * ow, dy + (p * oh + i) * ow,
                    plane + 2 * i * w, w, ow);
    }
  });
  return 0;
}
