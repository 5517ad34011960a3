// Stride-1 "same" 2-D convolution (odd kernels, float32, NCHW, optional bias) as MindSpore AOT
// custom ops for the CPU -- forward, gradient of the input, gradient of the weights (and bias) --
// run by the oneDNN library MindSpore itself ships (mindspore/lib/libdnnl.so.3).
//
// The input may come in parts (x_1 .. x_m, concatenated along the channels, as a ConvLSTM gate
// convolution reads concat([x, h])): the op concatenates them itself and the input gradient comes
// back split the same way, so the network runs no Concat, Split, BiasAdd or BiasAddGrad kernels
// around the convolution (each kernel of MindSpore's CPU runtime also costs its dispatch).
//
// Why: MindSpore's CPU Conv2D hands oneDNN plain NCHW memory, so oneDNN can only choose its
// im2col + GEMM kernel (or, on AVX-512 machines, a much slower plain-layout kernel). Created with
// "any" memory formats, the same library picks its direct convolutions on blocked layouts
// (nChw8c / nChw16c, what PyTorch gets from it); the plain tensors are reordered to and from
// those layouts around each call. The ISA cap (ONEDNN_MAX_CPU_ISA) applies as to MindSpore's
// own kernels: it is the same library instance.
//
// oneDNN's C API is declared below (only what this file uses; the values are those of oneDNN
// 3.x, whose C ABI is stable within the major version). MindSpore builds oneDNN with its
// "threadpool" CPU runtime, so the stream gets a thread pool of our own (zoo::Pool, thread_pool.h).
//
// AOT calling convention (MindSpore 2.x): params = inputs then outputs, float32, contiguous;
// return 0 on success.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "thread_pool.h"

extern "C" {
typedef struct dnnl_engine *dnnl_engine_t;
typedef struct dnnl_stream *dnnl_stream_t;
typedef struct dnnl_memory_desc *dnnl_memory_desc_t;
typedef const struct dnnl_memory_desc *const_dnnl_memory_desc_t;
typedef struct dnnl_primitive_desc *dnnl_primitive_desc_t;
typedef const struct dnnl_primitive_desc *const_dnnl_primitive_desc_t;
typedef struct dnnl_primitive *dnnl_primitive_t;
typedef const struct dnnl_primitive *const_dnnl_primitive_t;
typedef struct dnnl_memory *dnnl_memory_t;
typedef const struct dnnl_primitive_attr *const_dnnl_primitive_attr_t;
typedef int64_t dnnl_dims_t[12];
typedef int dnnl_status_t;  // enums are int-sized in the C ABI
struct dnnl_version_t {
  int major, minor, patch;
  const char *hash;
  unsigned cpu_runtime, gpu_runtime;
};
const dnnl_version_t *dnnl_version(void);
struct dnnl_exec_arg_t {
  int arg;
  dnnl_memory_t memory;
};

dnnl_status_t dnnl_engine_create(dnnl_engine_t *engine, int kind, size_t index);
dnnl_status_t dnnl_threadpool_interop_stream_create(dnnl_stream_t *stream, dnnl_engine_t engine,
                                                    void *threadpool);
dnnl_status_t dnnl_stream_wait(dnnl_stream_t stream);
dnnl_status_t dnnl_memory_desc_create_with_tag(dnnl_memory_desc_t *md, int ndims,
                                               const dnnl_dims_t dims, int data_type, int tag);
dnnl_status_t dnnl_memory_desc_destroy(dnnl_memory_desc_t md);
int dnnl_memory_desc_equal(const_dnnl_memory_desc_t lhs, const_dnnl_memory_desc_t rhs);
size_t dnnl_memory_desc_get_size(const_dnnl_memory_desc_t md);
dnnl_status_t dnnl_memory_create(dnnl_memory_t *memory, const_dnnl_memory_desc_t md,
                                 dnnl_engine_t engine, void *handle);
dnnl_status_t dnnl_memory_set_data_handle(dnnl_memory_t memory, void *handle);
dnnl_status_t dnnl_convolution_forward_primitive_desc_create(
    dnnl_primitive_desc_t *pd, dnnl_engine_t engine, int prop_kind, int alg_kind,
    const_dnnl_memory_desc_t src, const_dnnl_memory_desc_t weights, const_dnnl_memory_desc_t bias,
    const_dnnl_memory_desc_t dst, const dnnl_dims_t strides, const dnnl_dims_t dilates,
    const dnnl_dims_t padding_l, const dnnl_dims_t padding_r, const_dnnl_primitive_attr_t attr);
dnnl_status_t dnnl_convolution_backward_data_primitive_desc_create(
    dnnl_primitive_desc_t *pd, dnnl_engine_t engine, int alg_kind,
    const_dnnl_memory_desc_t diff_src, const_dnnl_memory_desc_t weights,
    const_dnnl_memory_desc_t diff_dst, const dnnl_dims_t strides, const dnnl_dims_t dilates,
    const dnnl_dims_t padding_l, const dnnl_dims_t padding_r, const_dnnl_primitive_desc_t hint,
    const_dnnl_primitive_attr_t attr);
dnnl_status_t dnnl_convolution_backward_weights_primitive_desc_create(
    dnnl_primitive_desc_t *pd, dnnl_engine_t engine, int alg_kind, const_dnnl_memory_desc_t src,
    const_dnnl_memory_desc_t diff_weights, const_dnnl_memory_desc_t diff_bias,
    const_dnnl_memory_desc_t diff_dst, const dnnl_dims_t strides, const dnnl_dims_t dilates,
    const dnnl_dims_t padding_l, const dnnl_dims_t padding_r, const_dnnl_primitive_desc_t hint,
    const_dnnl_primitive_attr_t attr);
dnnl_status_t dnnl_reorder_primitive_desc_create(dnnl_primitive_desc_t *pd,
                                                 const_dnnl_memory_desc_t src, dnnl_engine_t se,
                                                 const_dnnl_memory_desc_t dst, dnnl_engine_t de,
                                                 const_dnnl_primitive_attr_t attr);
const_dnnl_memory_desc_t dnnl_primitive_desc_query_md(const_dnnl_primitive_desc_t pd, int what,
                                                      int index);
dnnl_status_t dnnl_primitive_create(dnnl_primitive_t *primitive, const_dnnl_primitive_desc_t pd);
dnnl_status_t dnnl_primitive_execute(const_dnnl_primitive_t primitive, dnnl_stream_t stream,
                                     int nargs, const dnnl_exec_arg_t *args);
}

namespace {

// oneDNN 3.x enum values (dnnl_types.h / dnnl_common_types.h)
constexpr int kCpu = 1, kF32 = 3, kAny = 1, kA = 2, kAbcd = 5;
constexpr int kForwardTraining = 64, kDirect = 1;
constexpr int kQuerySrc = 129, kQueryDiffSrc = 130, kQueryWeights = 131, kQueryDiffWeights = 132,
              kQueryDst = 133, kQueryDiffDst = 134;
constexpr int kArgSrc = 1, kArgDst = 17, kArgWeights = 33, kArgBias = 41, kArgDiffSrc = 129,
              kArgDiffDst = 145, kArgDiffWeights = 161, kArgDiffBias = 169;

// The vtable of dnnl::threadpool_interop::threadpool_iface (dnnl_threadpool_iface.hpp):
// get_num_threads, get_in_parallel, parallel_for, get_flags, wait, destructor.
struct ThreadpoolIface {
  virtual int get_num_threads() const = 0;
  virtual bool get_in_parallel() const = 0;
  virtual void parallel_for(int n, const std::function<void(int, int)> &fn) = 0;
  virtual uint64_t get_flags() const = 0;  // 0: synchronous
  virtual void wait() {}
  virtual ~ThreadpoolIface() = default;
};

// oneDNN's stream runs its parallel loops on a zoo::Pool (thread_pool.h)
class StreamPool final : public ThreadpoolIface {
 public:
  explicit StreamPool(int threads) : pool(threads) {}
  int get_num_threads() const override { return pool.threads(); }
  bool get_in_parallel() const override { return zoo::Pool::in_parallel(); }
  void parallel_for(int n, const std::function<void(int, int)> &fn) override {
    pool.parallel_for(n, fn);
  }
  uint64_t get_flags() const override { return 0; }  // synchronous
  zoo::Pool pool;
};

// A tensor as the caller holds it (plain NCHW / OIHW) and as the primitive wants it; when the
// two differ, a reorder primitive and a buffer of the primitive's layout.
struct Operand {
  dnnl_memory_t user = nullptr, inner = nullptr;
  dnnl_primitive_t reorder = nullptr;
  std::vector<char> buffer;
};

// kPrepare / kPrepareGrad: the weights reordered once into the layout the forward primitive
// reads (for every time step of a recurrent network), and their summed gradient, which the
// prepared weight-gradient primitive leaves in its own layout, back to (O, C, k, k)
enum Kind { kForward = 0, kBackwardData = 1, kBackwardWeights = 2, kPrepare = 3, kPrepareGrad = 4 };

// one primitive for one kind and shape, with its three operands (two inputs, one output), the
// bias (forward) or its gradient (backward weights) when the layer has one, and a plain
// (N, C, H, W) buffer where an input in parts is concatenated (or the input gradient is split)
struct Plan {
  dnnl_primitive_t primitive = nullptr;
  Operand in0, in1, out;
  int arg_in0 = 0, arg_in1 = 0, arg_out = 0;
  dnnl_memory_t bias = nullptr;  // plain (O,), no reorder
  std::vector<char> staging;
  float *staged = nullptr;
  size_t prepared_bytes = 0;  // prepared plans: the bytes of the weights' (or gradient's) layout
};

struct Runtime {
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
  std::unique_ptr<StreamPool> pool;
  std::map<std::tuple<int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>,
           std::unique_ptr<Plan>>
      plans;
  std::mutex mutex;  // one call at a time: the plans' buffers and the stream are shared
};

Runtime *runtime() {
  static Runtime *rt = [] {
    auto *r = new Runtime();  // never destroyed: the helpers live as long as the process
    r->pool.reset(new StreamPool(zoo::pool_threads()));
    if (dnnl_engine_create(&r->engine, kCpu, 0) != 0 ||
        dnnl_threadpool_interop_stream_create(&r->stream, r->engine, r->pool.get()) != 0)
      r->engine = nullptr;
    return r;
  }();
  return rt->engine ? rt : nullptr;
}

dnnl_memory_desc_t make_md(const dnnl_dims_t dims, int tag, int ndims = 4) {
  dnnl_memory_desc_t md = nullptr;
  if (dnnl_memory_desc_create_with_tag(&md, ndims, dims, kF32, tag) != 0) return nullptr;
  return md;
}

void *align64(std::vector<char> *buffer, size_t bytes) {
  buffer->resize(bytes + 64);
  return reinterpret_cast<void *>(
      (reinterpret_cast<uintptr_t>(buffer->data()) + 63) & ~static_cast<uintptr_t>(63));
}

// user: the caller's layout; wanted: the primitive's; to_inner: reorder user -> inner (an input)
// or inner -> user (the output); own_buffer false: the inner memory's handle is set per call
bool bind(Runtime *rt, Operand *op, const_dnnl_memory_desc_t user, const_dnnl_memory_desc_t wanted,
          bool to_inner, bool own_buffer = true) {
  if (dnnl_memory_create(&op->user, user, rt->engine, nullptr) != 0) return false;
  if (dnnl_memory_desc_equal(user, wanted)) return true;
  void *aligned = own_buffer ? align64(&op->buffer, dnnl_memory_desc_get_size(wanted)) : nullptr;
  if (dnnl_memory_create(&op->inner, wanted, rt->engine, aligned) != 0) return false;
  dnnl_primitive_desc_t pd = nullptr;
  const_dnnl_memory_desc_t src = to_inner ? user : wanted, dst = to_inner ? wanted : user;
  if (dnnl_reorder_primitive_desc_create(&pd, src, rt->engine, dst, rt->engine, nullptr) != 0)
    return false;
  return dnnl_primitive_create(&op->reorder, pd) == 0;  // pd kept alive (owned by the plan)
}

// x (n, c, h, w), w (o, c, k, k), y (n, o, h, w): the shapes of every kind; with_bias: the
// forward adds a bias (O,), the weight gradient also gives the bias gradient; prepared: the
// weights come in the forward primitive's layout (kPrepare's output) and the weight gradient
// leaves in the weight-gradient primitive's layout (kPrepareGrad's input)
std::unique_ptr<Plan> make_plan(Runtime *rt, int kind, bool with_bias, bool prepared, int64_t n,
                                int64_t c, int64_t h, int64_t w, int64_t o, int64_t k) {
  const dnnl_dims_t x_dims = {n, c, h, w}, w_dims = {o, c, k, k}, y_dims = {n, o, h, w},
                    b_dims = {o};
  const dnnl_dims_t strides = {1, 1}, dilates = {0, 0};
  const dnnl_dims_t pad_l = {(k - 1) / 2, (k - 1) / 2}, pad_r = {k - 1 - (k - 1) / 2, k - 1 - (k - 1) / 2};
  dnnl_memory_desc_t x_plain = make_md(x_dims, kAbcd), w_plain = make_md(w_dims, kAbcd),
                     y_plain = make_md(y_dims, kAbcd), x_any = make_md(x_dims, kAny),
                     w_any = make_md(w_dims, kAny), y_any = make_md(y_dims, kAny),
                     b_plain = with_bias || prepared ? make_md(b_dims, kA, 1) : nullptr;
  if (!x_plain || !w_plain || !y_plain || !x_any || !w_any || !y_any ||
      ((with_bias || prepared) && !b_plain))
    return nullptr;
  // the forward descriptor (with the bias when the forward or the weight gradient has one, and
  // for prepared weights, which are laid out for the forward with bias) is also the hint of the
  // backward ones
  const bool fwd_bias = with_bias || prepared;
  dnnl_primitive_desc_t fwd = nullptr, pd = nullptr;
  if (dnnl_convolution_forward_primitive_desc_create(&fwd, rt->engine, kForwardTraining, kDirect,
                                                     x_any, w_any, fwd_bias ? b_plain : nullptr,
                                                     y_any, strides, dilates, pad_l, pad_r,
                                                     nullptr) != 0)
    return nullptr;
  auto plan = std::unique_ptr<Plan>(new Plan());
  const_dnnl_memory_desc_t w_fwd = dnnl_primitive_desc_query_md(fwd, kQueryWeights, 0);
  const_dnnl_memory_desc_t w_user = prepared ? w_fwd : w_plain;  // how the caller holds w
  if (prepared) plan->prepared_bytes = dnnl_memory_desc_get_size(w_fwd);
  bool ok = true;
  if (kind == kPrepare) {  // w (plain) -> the forward layout, written to the caller's buffer
    ok = bind(rt, &plan->in1, w_plain, w_fwd, true, false);
    plan->prepared_bytes = dnnl_memory_desc_get_size(w_fwd);
    return ok ? std::move(plan) : nullptr;
  }
  if (kind == kForward) {
    pd = fwd;
    plan->arg_in0 = kArgSrc, plan->arg_in1 = kArgWeights, plan->arg_out = kArgDst;
    ok = bind(rt, &plan->in0, x_plain, dnnl_primitive_desc_query_md(pd, kQuerySrc, 0), true) &&
         bind(rt, &plan->in1, w_user, dnnl_primitive_desc_query_md(pd, kQueryWeights, 0), true) &&
         bind(rt, &plan->out, y_plain, dnnl_primitive_desc_query_md(pd, kQueryDst, 0), false);
  } else if (kind == kBackwardData) {  // inputs dy, w -> dx
    ok = dnnl_convolution_backward_data_primitive_desc_create(&pd, rt->engine, kDirect, x_any,
                                                              w_any, y_any, strides, dilates,
                                                              pad_l, pad_r, fwd, nullptr) == 0;
    plan->arg_in0 = kArgDiffDst, plan->arg_in1 = kArgWeights, plan->arg_out = kArgDiffSrc;
    ok = ok &&
         bind(rt, &plan->in0, y_plain, dnnl_primitive_desc_query_md(pd, kQueryDiffDst, 0), true) &&
         bind(rt, &plan->in1, w_user, dnnl_primitive_desc_query_md(pd, kQueryWeights, 0), true) &&
         bind(rt, &plan->out, x_plain, dnnl_primitive_desc_query_md(pd, kQueryDiffSrc, 0), false);
  } else {  // inputs x, dy -> dw (and db); kPrepareGrad: dw (its layout) -> plain
    ok = dnnl_convolution_backward_weights_primitive_desc_create(
             &pd, rt->engine, kDirect, x_any, w_any, with_bias ? b_plain : nullptr, y_any,
             strides, dilates, pad_l, pad_r, fwd, nullptr) == 0;
    if (!ok) return nullptr;
    const_dnnl_memory_desc_t dw_md = dnnl_primitive_desc_query_md(pd, kQueryDiffWeights, 0);
    if (kind == kPrepareGrad) {
      plan->prepared_bytes = dnnl_memory_desc_get_size(dw_md);
      return bind(rt, &plan->out, w_plain, dw_md, false, false) ? std::move(plan) : nullptr;
    }
    if (prepared) plan->prepared_bytes = dnnl_memory_desc_get_size(dw_md);
    plan->arg_in0 = kArgSrc, plan->arg_in1 = kArgDiffDst, plan->arg_out = kArgDiffWeights;
    ok = bind(rt, &plan->in0, x_plain, dnnl_primitive_desc_query_md(pd, kQuerySrc, 0), true) &&
         bind(rt, &plan->in1, y_plain, dnnl_primitive_desc_query_md(pd, kQueryDiffDst, 0), true) &&
         bind(rt, &plan->out, prepared ? dw_md : w_plain, dw_md, false);
  }
  if (ok && with_bias) ok = dnnl_memory_create(&plan->bias, b_plain, rt->engine, nullptr) == 0;
  if (!ok || dnnl_primitive_create(&plan->primitive, pd) != 0) return nullptr;
  return plan;  // descriptors are leaked on purpose: a handful per shape, kept for the process
}

bool reorder(Runtime *rt, Operand *op, bool to_inner) {
  if (!op->reorder) return true;
  const dnnl_exec_arg_t args[2] = {{kArgSrc, to_inner ? op->user : op->inner},
                                   {kArgDst, to_inner ? op->inner : op->user}};
  return dnnl_primitive_execute(op->reorder, rt->stream, 2, args) == 0;
}

dnnl_memory_t used(const Operand &op) { return op.inner ? op.inner : op.user; }

// The m parts (n, c_i, h, w) of an input <-> the plain (n, sum c_i, h, w) buffer: per image, one
// contiguous block per part.
void concat_parts(float *whole, void *const *parts, const int64_t *const *shapes, int m) {
  const int64_t n = shapes[0][0], hw = shapes[0][2] * shapes[0][3];
  for (int64_t i = 0; i < n; ++i)
    for (int p = 0; p < m; ++p) {
      const int64_t block = shapes[p][1] * hw;
      std::memcpy(whole, static_cast<const float *>(parts[p]) + i * block, block * sizeof(float));
      whole += block;
    }
}

void split_parts(const float *whole, void *const *parts, const int64_t *const *shapes, int m) {
  const int64_t n = shapes[0][0], hw = shapes[0][2] * shapes[0][3];
  for (int64_t i = 0; i < n; ++i)
    for (int p = 0; p < m; ++p) {
      const int64_t block = shapes[p][1] * hw;
      std::memcpy(static_cast<float *>(parts[p]) + i * block, whole, block * sizeof(float));
      whole += block;
    }
}

// The plan of a kind and shape, made on first use; nullptr when oneDNN refuses the shape.
Plan *find_plan(Runtime *rt, int kind, bool with_bias, bool prepared, int64_t n, int64_t c,
                int64_t h, int64_t w, int64_t o, int64_t k, int m) {
  auto key = std::make_tuple(kind, with_bias, prepared, n, c, h, w, o, k);
  auto it = rt->plans.find(key);
  if (it == rt->plans.end()) {
    auto plan = make_plan(rt, kind, with_bias, prepared, n, c, h, w, o, k);
    if (!plan) return nullptr;
    it = rt->plans.emplace(key, std::move(plan)).first;
  }
  Plan *p = it->second.get();
  if (m > 1 && !p->staged)  // the concatenated input (or its gradient)
    p->staged = static_cast<float *>(
        align64(&p->staging, static_cast<size_t>(n * c * h * w) * sizeof(float)));
  return p;
}

bool float32(int nparam, const char **dtypes) {
  for (int i = 0; i < nparam; ++i)
    if (!dtypes || !dtypes[i] || std::strcmp(dtypes[i], "float32") != 0) return false;
  return true;
}

int64_t elements(const int64_t *shape, int ndims) {
  int64_t e = 1;
  for (int i = 0; i < ndims; ++i) e *= shape[i];
  return e;
}

// Runs op while the pool's helpers are awake (one call at a time: plans and stream are shared).
template <class Op>
int locked(Runtime *rt, Op op) {
  std::lock_guard<std::mutex> lock(rt->mutex);
  return zoo::with_active(&rt->pool->pool, op);
}

// The parameters, by kind (m >= 1 parts of the input; b / db only with a bias; wp: the weights as
// kPrepare left them, always with a bias; dwp: their gradient in the weight-gradient layout):
//   forward            x_1..x_m, w, [b], y           prepared: x_1..x_m, wp, b, y
//   backward data      dy, w, x_1..x_m, dx_1..dx_m   prepared: dy, wp, x_1..x_m, dx_1..dx_m
//   backward weights   x_1..x_m, dy, w, [b], dw, [db]   prepared: .., dy, wp, b, dwp, db
// (the x_i of backward data, w / wp and b of backward weights only give their outputs' shapes)
int run(int kind, bool with_bias, bool prepared, int nparam, void **params, int *ndims,
        int64_t **shapes, const char **dtypes) {
  const int b = with_bias ? 1 : 0;
  const int m = kind == kForward ? nparam - 2 - b
                : kind == kBackwardData ? (nparam - 2) / 2
                : nparam - 3 - 2 * b;
  if (m < 1 || (kind == kBackwardData && (nparam - 2) % 2 != 0) ||
      (kind == kBackwardData && with_bias) || !float32(nparam, dtypes))
    return 1;
  for (int i = 0; i < nparam; ++i) {
    const int want = (with_bias && ((kind == kForward && i == m + 1) ||
                                    (kind == kBackwardWeights && (i == m + 2 || i == nparam - 1))))
                         ? 1 : 4;
    if (ndims[i] != want) return 1;
  }
  const int first_x = kind == kBackwardData ? 2 : 0;
  const int w_index = kind == kForward ? m : kind == kBackwardData ? 1 : m + 1;
  void *const *parts = params + first_x;
  const int64_t *const *part_shapes = shapes + first_x;
  const int64_t *x = part_shapes[0];
  const int64_t *wt = shapes[w_index];
  // O from the output (forward) or dy: the prepared weights' dimensions may be padded
  const int64_t o = kind == kForward ? shapes[nparam - 1][1] : kind == kBackwardData ? shapes[0][1]
                                                                                   : shapes[m][1];
  const int64_t n = x[0], h = x[2], w = x[3], k = wt[2];
  int64_t c = 0;
  for (int p = 0; p < m; ++p) {
    const int64_t *s = part_shapes[p];
    if (s[0] != n || s[2] != h || s[3] != w) return 2;
    c += s[1];
  }
  if (wt[3] != k || k % 2 != 1) return 2;
  if (prepared ? (wt[0] < o || wt[1] < c) : (wt[0] != o || wt[1] != c)) return 2;
  if (with_bias && shapes[kind == kForward ? m + 1 : m + 2][0] != o) return 2;
  Runtime *rt = runtime();
  if (!rt) return 3;
  return locked(rt, [&]() -> int {
    Plan *p = find_plan(rt, kind, with_bias, prepared, n, c, h, w, o, k, m);
    if (!p) return 4;
    const size_t w_bytes = static_cast<size_t>(elements(wt, 4)) * sizeof(float);
    if (prepared && p->prepared_bytes > w_bytes) return 10;  // wp is too small for the layout
    // the input, or its gradient, concatenated (one part: the caller's own buffer)
    void *whole_x = m > 1 ? p->staged : kind == kBackwardData ? params[2 + m] : parts[0];
    void *in0 = kind == kBackwardData ? params[0] : whole_x;
    void *in1 = kind == kBackwardData ? params[1] : params[m];
    void *out = kind == kForward ? params[nparam - 1]
                : kind == kBackwardData ? whole_x
                : params[nparam - 1 - b];
    if (kind != kBackwardData && m > 1) concat_parts(p->staged, parts, part_shapes, m);
    if (dnnl_memory_set_data_handle(p->in0.user, in0) != 0 ||
        dnnl_memory_set_data_handle(p->in1.user, in1) != 0 ||
        dnnl_memory_set_data_handle(p->out.user, out) != 0)
      return 5;
    if (with_bias && dnnl_memory_set_data_handle(
                         p->bias, kind == kForward ? params[m + 1] : params[nparam - 1]) != 0)
      return 5;
    if (!reorder(rt, &p->in0, true) || !reorder(rt, &p->in1, true)) return 6;
    const dnnl_exec_arg_t args[4] = {{p->arg_in0, used(p->in0)},
                                     {p->arg_in1, used(p->in1)},
                                     {p->arg_out, used(p->out)},
                                     {kind == kForward ? kArgBias : kArgDiffBias, p->bias}};
    if (dnnl_primitive_execute(p->primitive, rt->stream, with_bias ? 4 : 3, args) != 0) return 7;
    if (!reorder(rt, &p->out, false)) return 8;
    if (dnnl_stream_wait(rt->stream) != 0) return 9;
    if (kind == kBackwardData && m > 1) split_parts(p->staged, params + 2 + m, part_shapes, m);
    if (kind == kBackwardWeights && prepared)  // the bytes past the layout: zeros, not garbage
      std::memset(static_cast<char *>(out) + p->prepared_bytes, 0, w_bytes - p->prepared_bytes);
    return 0;
  });
}

// kPrepare: (x, w, wp) -> wp = w in the forward primitive's layout (x only gives N, H, W);
// kPrepareGrad: (x, w, dwp, dw) -> dw = dwp from the weight-gradient layout to (O, C, k, k).
// Both for a convolution with a bias (the layouts are those of the prepared plans).
int run_prepare(int kind, int nparam, void **params, int *ndims, int64_t **shapes,
                const char **dtypes) {
  if (nparam != (kind == kPrepare ? 3 : 4) || !float32(nparam, dtypes)) return 1;
  for (int i = 0; i < nparam; ++i)
    if (ndims[i] != 4) return 1;
  const int64_t *x = shapes[0], *wt = shapes[1];
  const int64_t n = x[0], h = x[2], w = x[3], o = wt[0], c = wt[1], k = wt[2];
  if (wt[3] != k || k % 2 != 1) return 2;
  const size_t plain_bytes = static_cast<size_t>(elements(wt, 4)) * sizeof(float);
  const size_t buffer_bytes = static_cast<size_t>(elements(shapes[2], 4)) * sizeof(float);
  Runtime *rt = runtime();
  if (!rt) return 3;
  return locked(rt, [&]() -> int {
    Plan *p = find_plan(rt, kind, true, true, n, c, h, w, o, k, 1);
    if (!p) return 4;
    if (p->prepared_bytes > buffer_bytes) return 10;
    Operand *op = kind == kPrepare ? &p->in1 : &p->out;
    void *plain = kind == kPrepare ? params[1] : params[3];
    char *blocked = static_cast<char *>(params[2]);
    if (!op->reorder) {  // oneDNN wants the plain layout itself
      if (kind == kPrepare) std::memcpy(blocked, plain, plain_bytes);
      else std::memcpy(plain, blocked, plain_bytes);
    } else {
      if (dnnl_memory_set_data_handle(op->user, plain) != 0 ||
          dnnl_memory_set_data_handle(op->inner, blocked) != 0)
        return 5;
      if (!reorder(rt, op, kind == kPrepare) || dnnl_stream_wait(rt->stream) != 0) return 6;
    }
    if (kind == kPrepare)
      std::memset(blocked + p->prepared_bytes, 0, buffer_bytes - p->prepared_bytes);
    return 0;
  });
}

}  // namespace

// The entry points, one per kind, bias and number of input parts m = 1..4 (MindSpore keys a custom
// op's bprop by its function's name, so ops with other inputs need other names):
//   ConvForward<m>               (x_1..x_m, w) -> y
//   ConvForwardBias<m>           (x_1..x_m, w, b) -> y
//   ConvBackwardData<m>          (dy, w, x_1..x_m) -> (dx_1..dx_m)   (the x_i only give shapes)
//   ConvBackwardWeights<m>       (x_1..x_m, dy, w) -> dw             (w only gives dw's shape)
//   ConvBackwardWeightsBias<m>   (x_1..x_m, dy, w, b) -> (dw, db)    (w, b only give shapes)
// and with prepared weights wp (WeightsPrepare's output; convolutions with a bias only):
//   ConvForwardPrepared<m>       (x_1..x_m, wp, b) -> y
//   ConvBackwardDataPrepared<m>  (dy, wp, x_1..x_m) -> (dx_1..dx_m)
//   ConvBackwardWeightsPrepared<m>  (x_1..x_m, dy, wp, b) -> (dwp, db)
//   WeightsPrepare               (x, w) -> wp      (x gives N, H, W of the convolution's input)
//   WeightsPrepareGrad           (x, w, dwp) -> dw
#define ZOO_CONV_ENTRY(name, kind, bias, prepared, m, nparams)                                \
  int name##m(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,  \
              void *, void *) {                                                              \
    return nparam == (nparams) ? run(kind, bias, prepared, nparam, params, ndims, shapes, dtypes) \
                               : 1;                                                          \
  }
#define ZOO_CONV_ENTRIES(m)                                                              \
  ZOO_CONV_ENTRY(ConvForward, kForward, false, false, m, m + 2)                          \
  ZOO_CONV_ENTRY(ConvForwardBias, kForward, true, false, m, m + 3)                       \
  ZOO_CONV_ENTRY(ConvBackwardData, kBackwardData, false, false, m, 2 * m + 2)            \
  ZOO_CONV_ENTRY(ConvBackwardWeights, kBackwardWeights, false, false, m, m + 3)          \
  ZOO_CONV_ENTRY(ConvBackwardWeightsBias, kBackwardWeights, true, false, m, m + 5)       \
  ZOO_CONV_ENTRY(ConvForwardPrepared, kForward, true, true, m, m + 3)                    \
  ZOO_CONV_ENTRY(ConvBackwardDataPrepared, kBackwardData, false, true, m, 2 * m + 2)     \
  ZOO_CONV_ENTRY(ConvBackwardWeightsPrepared, kBackwardWeights, true, true, m, m + 5)

extern "C" {
ZOO_CONV_ENTRIES(1)
ZOO_CONV_ENTRIES(2)
ZOO_CONV_ENTRIES(3)
ZOO_CONV_ENTRIES(4)
int WeightsPrepare(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                   void *, void *) {
  return run_prepare(kPrepare, nparam, params, ndims, shapes, dtypes);
}
int WeightsPrepareGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                       const char **dtypes, void *, void *) {
  return run_prepare(kPrepareGrad, nparam, params, ndims, shapes, dtypes);
}
}

// The oneDNN major version the declarations above were written for, and the loaded library's
// version: src/kernels/onednn_conv.py compares them when it loads this library (another major
// version: the layers stay native).
extern "C" int ZooOnednnApiMajor() { return 3; }
extern "C" int ZooOnednnVersion(int *major, int *minor, int *patch) {
  const dnnl_version_t *v = dnnl_version();
  *major = v->major;
  *minor = v->minor;
  *patch = v->patch;
  return 0;
}
