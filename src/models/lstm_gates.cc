// The ConvLSTM gate math of one step (Shi et al. 2015, with peepholes) as two MindSpore AOT
// custom ops for the CPU: the forward and its gradient, each one pass over the state.
//
//   i = sigmoid(zi + w_ci * c)      f = sigmoid(zf + w_cf * c)      g = tanh(zg)
//   c' = f * c + i * g              o = sigmoid(zo + w_co * c')     h' = o * tanh(c')
//
// z is the gate convolution's output (N, 4C, H, W) in the gate order i, f, g, o; c and the three
// peephole weights, already broadcast to the state's shape, are (N, C, H, W). The native graph
// runs this as ~13 element-wise kernels forward and ~25 backward, each a pass over memory and a
// thread-pool dispatch; here each direction is one pass. The gradient recomputes the forward
// values from the same inputs instead of storing them.
//
// AOT calling convention (MindSpore 2.x): params = inputs then outputs, float32, contiguous.
#include <cstdint>

namespace {

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
// c (N, C, ...) of one rank (2 if not); per_gate = C x spatial, the stride between gate blocks
int state_layout(int nparam, int expected, const int *ndims, int64_t *const *shapes,
                 int64_t *batch, int64_t *per_gate) {
  if (nparam != expected) return 1;
  const int64_t *z_shape = shapes[0], *c_shape = shapes[1];
  if (ndims[0] != ndims[1] || ndims[0] < 2 || z_shape[0] != c_shape[0] ||
      z_shape[1] != 4 * c_shape[1])
    return 2;
  *batch = c_shape[0];
  *per_gate = numel(ndims[0], c_shape) / c_shape[0];
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

// one image's state: the four gate blocks of z, each ``count`` values long
void forward_block(int64_t count, const float *__restrict zi, const float *__restrict zf,
                   const float *__restrict zg, const float *__restrict zo,
                   const float *__restrict c, const float *__restrict wi,
                   const float *__restrict wf, const float *__restrict wo, float *__restrict h_out,
                   float *__restrict c_out) {
  for (int64_t k = 0; k < count; ++k) {
    const Gates v = gates(zi[k], zf[k], zg[k], zo[k], c[k], wi[k], wf[k], wo[k]);
    c_out[k] = v.cn;
    h_out[k] = v.o * v.tc;
  }
}

void backward_block(int64_t count, const float *__restrict zi, const float *__restrict zf,
                    const float *__restrict zg, const float *__restrict zo,
                    const float *__restrict c, const float *__restrict wi,
                    const float *__restrict wf, const float *__restrict wo,
                    const float *__restrict dh, const float *__restrict dc_in,
                    float *__restrict dzi_out, float *__restrict dzf_out,
                    float *__restrict dzg_out, float *__restrict dzo_out, float *__restrict dc,
                    float *__restrict dwi, float *__restrict dwf, float *__restrict dwo) {
  for (int64_t k = 0; k < count; ++k) {
    const float cp = c[k];
    const Gates v = gates(zi[k], zf[k], zg[k], zo[k], cp, wi[k], wf[k], wo[k]);
    const float i = v.i, f = v.f, g = v.g, cn = v.cn, o = v.o, tc = v.tc;
    // h' = o * tanh(c'): through o and through c'
    const float dzo = dh[k] * tc * o * (1.0f - o);
    const float dcn = dc_in[k] + dh[k] * o * (1.0f - tc * tc) + dzo * wo[k];
    const float dzi = dcn * g * i * (1.0f - i);
    const float dzf = dcn * cp * f * (1.0f - f);
    dzi_out[k] = dzi;
    dzf_out[k] = dzf;
    dzg_out[k] = dcn * i * (1.0f - g * g);
    dzo_out[k] = dzo;
    dc[k] = dcn * f + dzi * wi[k] + dzf * wf[k];
    dwi[k] = dzi * cp;
    dwf[k] = dzf * cp;
    dwo[k] = dzo * cn;
  }
}

}  // namespace

// inputs z, c, w_ci, w_cf, w_co; outputs h', c'
extern "C" int LstmGatesForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                const char **dtypes, void *stream, void *extra) {
  int64_t batch, m;
  if (const int error = state_layout(nparam, 7, ndims, shapes, &batch, &m)) return error;
  const float *const *in = reinterpret_cast<const float *const *>(params);
  float *const *out = reinterpret_cast<float *const *>(params + 5);
  for (int64_t n = 0; n < batch; ++n) {
    const float *zn = in[0] + n * 4 * m;
    const int64_t s = n * m;
    forward_block(m, zn, zn + m, zn + 2 * m, zn + 3 * m, in[1] + s, in[2] + s, in[3] + s,
                  in[4] + s, out[0] + s, out[1] + s);
  }
  return 0;
}

// inputs z, c, w_ci, w_cf, w_co, dh', dc'; outputs dz, dc, dw_ci, dw_cf, dw_co (state-shaped)
extern "C" int LstmGatesBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                 const char **dtypes, void *stream, void *extra) {
  int64_t batch, m;
  if (const int error = state_layout(nparam, 12, ndims, shapes, &batch, &m)) return error;
  const float *const *in = reinterpret_cast<const float *const *>(params);
  float *const *out = reinterpret_cast<float *const *>(params + 7);
  for (int64_t n = 0; n < batch; ++n) {
    const float *zn = in[0] + n * 4 * m;
    float *dzn = out[0] + n * 4 * m;
    const int64_t s = n * m;
    backward_block(m, zn, zn + m, zn + 2 * m, zn + 3 * m, in[1] + s, in[2] + s, in[3] + s,
                   in[4] + s, in[5] + s, in[6] + s, dzn, dzn + m, dzn + 2 * m, dzn + 3 * m,
                   out[1] + s, out[2] + s, out[3] + s, out[4] + s);
  }
  return 0;
}
