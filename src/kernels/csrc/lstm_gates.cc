// The ConvLSTM gate math of one step (Shi et al. 2015, with peepholes) as two MindSpore AOT
// custom ops for the CPU: the forward and its gradient, each one pass over the state.
//
//   i = sigmoid(zi + w_ci * c)      f = sigmoid(zf + w_cf * c)      g = tanh(zg)
//   c' = f * c + i * g              o = sigmoid(zo + w_co * c')     h' = o * tanh(c')
//
// z is the gate convolution's output (N, 4C, H, W) in the gate order i, f, g, o; c is (N, C, H, W)
// and the three peephole weights are (C,), one per channel (their gradients are summed over the
// batch and the map here, so the network runs no BroadcastTo / ReduceSum around the op and sums
// (C,) vectors over the time steps). The native graph runs this as ~13 element-wise kernels
// forward and ~25 backward, each a pass over memory and a thread-pool dispatch; here each
// direction is one pass, split over the channels between the threads of a zoo::Pool
// (thread_pool.h). The gradient recomputes the forward values from the same inputs instead of
// storing them.
//
// AOT calling convention (MindSpore 2.x): params = inputs then outputs, float32, contiguous.
#include <cstdint>
#include <functional>

#include "thread_pool.h"

namespace {

constexpr int kLanes = 16;  // partial sums of the peephole gradients (vectorised reductions)

// exp, sigmoid and tanh written so that GCC vectorises the loops (glibc's expf / tanhf are
// scalar calls): exp(x) = 2^n exp(r), |r| <= ln2 / 2, degree-6 Taylor polynomial (relative error
// ~2e-7); inputs are clamped to [-87, 88] (no overflow; a NaN stays NaN: comparisons keep it)
inline float fast_exp(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  // round to nearest: x log2(e) + 128.5 > 0, so truncation is floor (and vectorises)
  const int32_t ni = static_cast<int32_t>(x * 1.44269504f + 128.5f) - 128;
  const float n = static_cast<float>(ni);
  const float r = x - n * 0.693145752f - n * 1.42860677e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

inline float sigmoid(float v) { return 1.0f / (1.0f + fast_exp(-v)); }

inline float tanh_(float v) { return 1.0f - 2.0f / (fast_exp(2.0f * v) + 1.0f); }

int64_t numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

// the checks of both entry points: ``nparam`` as expected (1 if not), z (N, 4C, ...) and
// c (N, C, ...) of one rank, the peepholes (C,) (2 if not); the state's N, C and spatial size
int state_layout(int nparam, int expected, const int *ndims, int64_t *const *shapes,
                 int64_t *batch, int64_t *channels, int64_t *spatial) {
  if (nparam != expected) return 1;
  const int64_t *z_shape = shapes[0], *c_shape = shapes[1];
  if (ndims[0] != ndims[1] || ndims[0] < 2 || z_shape[0] != c_shape[0] ||
      z_shape[1] != 4 * c_shape[1])
    return 2;
  for (int i = 2; i < 5; ++i)
    if (ndims[i] != 1 || shapes[i][0] != c_shape[1]) return 2;
  *batch = c_shape[0];
  *channels = c_shape[1];
  *spatial = c_shape[1] ? numel(ndims[0], c_shape) / c_shape[0] / c_shape[1] : 0;
  return 0;
}

struct Gates {
  float i, f, g, cn, o, tc;  // input, forget, candidate, new cell state, output, tanh(c')
};

inline Gates gates(float zi, float zf, float zg, float zo, float cp, float wi, float wf,
                   float wo) {
  Gates v;
  v.i = sigmoid(zi + wi * cp);
  v.f = sigmoid(zf + wf * cp);
  v.g = tanh_(zg);
  v.cn = v.f * cp + v.i * v.g;
  v.o = sigmoid(zo + wo * v.cn);
  v.tc = tanh_(v.cn);
  return v;
}

// one channel of one image: the four gate blocks of z, each ``count`` values long; scalar
// peepholes (the loops take scalars by value: the compiler vectorises them only then)
void forward_block(int64_t count, const float *__restrict zi, const float *__restrict zf,
                   const float *__restrict zg, const float *__restrict zo,
                   const float *__restrict c, float wi, float wf, float wo,
                   float *__restrict h_out, float *__restrict c_out) {
  for (int64_t k = 0; k < count; ++k) {
    const Gates v = gates(zi[k], zf[k], zg[k], zo[k], c[k], wi, wf, wo);
    c_out[k] = v.cn;
    h_out[k] = v.o * v.tc;
  }
}

// the gradient of one channel of one image; adds the peephole gradients' sums to sums[0..2]
void backward_block(int64_t count, const float *__restrict zi, const float *__restrict zf,
                    const float *__restrict zg, const float *__restrict zo,
                    const float *__restrict c, float wi, float wf, float wo,
                    const float *__restrict dh, const float *__restrict dc_in,
                    float *__restrict dzi_out, float *__restrict dzf_out,
                    float *__restrict dzg_out, float *__restrict dzo_out, float *__restrict dc,
                    double *sums) {
  float si[kLanes] = {0}, sf[kLanes] = {0}, so[kLanes] = {0};
  for (int64_t start = 0; start < count; start += kLanes) {
    const int64_t lanes = count - start < kLanes ? count - start : kLanes;
    for (int64_t j = 0; j < lanes; ++j) {
      const int64_t k = start + j;
      const float cp = c[k];
      const Gates v = gates(zi[k], zf[k], zg[k], zo[k], cp, wi, wf, wo);
      const float i = v.i, f = v.f, g = v.g, cn = v.cn, o = v.o, tc = v.tc;
      // h' = o * tanh(c'): through o and through c'
      const float dzo = dh[k] * tc * o * (1.0f - o);
      const float dcn = dc_in[k] + dh[k] * o * (1.0f - tc * tc) + dzo * wo;
      const float dzi = dcn * g * i * (1.0f - i);
      const float dzf = dcn * cp * f * (1.0f - f);
      dzi_out[k] = dzi;
      dzf_out[k] = dzf;
      dzg_out[k] = dcn * i * (1.0f - g * g);
      dzo_out[k] = dzo;
      dc[k] = dcn * f + dzi * wi + dzf * wf;
      si[j] += dzi * cp;
      sf[j] += dzf * cp;
      so[j] += dzo * cn;
    }
  }
  for (int j = 0; j < kLanes; ++j) {
    sums[0] += si[j];
    sums[1] += sf[j];
    sums[2] += so[j];
  }
}

}  // namespace

// inputs z, c, w_ci, w_cf, w_co; outputs h', c'
extern "C" int LstmGatesForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                const char **dtypes, void *stream, void *extra) {
  int64_t batch, ch, m;
  if (const int error = state_layout(nparam, 7, ndims, shapes, &batch, &ch, &m)) return error;
  const float *const *in = reinterpret_cast<const float *const *>(params);
  float *const *out = reinterpret_cast<float *const *>(params + 5);
  zoo::parallel_ranges(ch, batch * ch * m, [&](int64_t c0, int64_t c1) {
    for (int64_t q = c0; q < c1; ++q)
      for (int64_t n = 0; n < batch; ++n) {
        const float *zn = in[0] + (n * 4 * ch + q) * m;
        const int64_t s = (n * ch + q) * m, gate = ch * m;
        forward_block(m, zn, zn + gate, zn + 2 * gate, zn + 3 * gate, in[1] + s, in[2][q],
                      in[3][q], in[4][q], out[0] + s, out[1] + s);
      }
  });
  return 0;
}

// inputs z, c, w_ci, w_cf, w_co, dh', dc'; outputs dz, dc, dw_ci, dw_cf, dw_co (the last three
// (C,): summed over the batch and the map)
extern "C" int LstmGatesBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                 const char **dtypes, void *stream, void *extra) {
  int64_t batch, ch, m;
  if (const int error = state_layout(nparam, 12, ndims, shapes, &batch, &ch, &m)) return error;
  const float *const *in = reinterpret_cast<const float *const *>(params);
  float *const *out = reinterpret_cast<float *const *>(params + 7);
  zoo::parallel_ranges(ch, batch * ch * m, [&](int64_t c0, int64_t c1) {
    for (int64_t q = c0; q < c1; ++q) {
      double sums[3] = {0.0, 0.0, 0.0};
      for (int64_t n = 0; n < batch; ++n) {
        const float *zn = in[0] + (n * 4 * ch + q) * m;
        float *dzn = out[0] + (n * 4 * ch + q) * m;
        const int64_t s = (n * ch + q) * m, gate = ch * m;
        backward_block(m, zn, zn + gate, zn + 2 * gate, zn + 3 * gate, in[1] + s, in[2][q],
                       in[3][q], in[4][q], in[5] + s, in[6] + s, dzn, dzn + gate,
                       dzn + 2 * gate, dzn + 3 * gate, out[1] + s, sums);
      }
      for (int g = 0; g < 3; ++g) out[2 + g][q] = static_cast<float>(sums[g]);
    }
  });
  return 0;
}
