// A small thread pool for the repository's CPU custom ops (included by onednn_conv.cc, the
// thread pool of oneDNN's stream, and fused_layers.cc). Header-only: each library gets its own pool.
#ifndef ZOO_THREAD_POOL_H_
#define ZOO_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <sched.h>

namespace zoo {

// The calling thread and (threads - 1) helpers share the n tasks of a parallel_for. A task is
// claimed with one compare-and-swap on a word holding (generation, n, next index), so a helper
// that wakes late -- after the call it was woken for has ended -- finds another generation and
// claims nothing. The caller runs tasks until none is left to claim, then waits only for tasks a
// helper has actually claimed: it never waits for a helper that is still asleep or waiting for a
// core. (With a count of helpers to wait for, a helper kept off the CPU by MindSpore's own
// threads, which spin for a while after each of their kernels, held every call up by a scheduler
// time slice, making a convolution about 10x slower between MindSpore kernels than alone.)
// While an op runs (set_active(true) .. set_active(false)) the helpers spin for the next
// parallel_for (oneDNN issues several per primitive, plus the reorders);
// between ops they sleep on a condition variable at once, so they never compete for the cores
// with MindSpore's own kernels (spinning between ops made a Tiny-DarkNet step ~15 % slower).
class Pool final {
 public:
  explicit Pool(int threads) : threads_(threads < 1 ? 1 : threads) {
    for (int t = 1; t < threads_; ++t) helpers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto &h : helpers_) h.join();
  }
  void set_active(bool active) {
    if (active) {
      active_.store(true);
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    active_.store(false);  // helpers that spin see it and go to sleep
  }
  int threads() const { return threads_; }
  // whether the calling thread is running a task of this pool's kind (nested calls run inline)
  static bool &in_parallel() {
    static thread_local bool inside = false;
    return inside;
  }
  // fn(i, n) for i = 0 .. n-1, shared by the caller and the helpers; returns when all are done
  void parallel_for(int n, const std::function<void(int, int)> &fn) {
    if (n <= 0) return;
    if (n == 1 || threads_ == 1 || in_parallel() || n > kMaxTasks) {
      for (int i = 0; i < n; ++i) fn(i, n);
      return;
    }
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      gen = (generation_.load() + 1) & kGenMask;
      fn_ = &fn;
      done_.store(0);
      claim_.store(pack(gen, n, 0));  // published before the generation the helpers watch
      generation_.store(gen);
    }
    wake_.notify_all();
    int mine = run(gen);
    while (done_.load(std::memory_order_acquire) < n - mine) __builtin_ia32_pause();
  }

 private:
  static constexpr int kIndexBits = 20;
  static constexpr uint64_t kIndexMask = (uint64_t(1) << kIndexBits) - 1;
  static constexpr int kMaxTasks = int(kIndexMask);
  static constexpr uint64_t kGenMask = (uint64_t(1) << 24) - 1;
  static uint64_t pack(uint64_t gen, uint64_t n, uint64_t i) {
    return (gen << (2 * kIndexBits)) | (n << kIndexBits) | i;
  }
  // claims and runs tasks of generation gen while there are any; the number it ran
  int run(uint64_t gen) {
    int ran = 0;
    uint64_t word = claim_.load();
    for (;;) {
      const uint64_t i = word & kIndexMask, n = (word >> kIndexBits) & kIndexMask;
      if ((word >> (2 * kIndexBits)) != gen || i >= n) return ran;
      if (!claim_.compare_exchange_weak(word, word + 1)) continue;  // word reloaded
      // claimed: the caller waits for this task, so fn_ stays valid until it is done
      in_parallel() = true;
      (*fn_)(static_cast<int>(i), static_cast<int>(n));
      in_parallel() = false;
      ++ran;
      word = claim_.load();
    }
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      for (int spin = 0; spin < 20000 && generation_.load() == seen && active_.load(); ++spin)
        __builtin_ia32_pause();
      if (generation_.load() == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen || stop_; });
      }
      if (stop_) return;
      seen = generation_.load();
      int ran = run(seen);
      if (ran) done_.fetch_add(ran, std::memory_order_release);
    }
  }
  const int threads_;
  std::vector<std::thread> helpers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0}, claim_{0};
  std::atomic<int> done_{0};
  std::atomic<bool> active_{false};
  const std::function<void(int, int)> *fn_ = nullptr;
  bool stop_ = false;
};

inline int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}


// The pool size: ZOO_ONEDNN_THREADS when set (> 0), else the usable cores.
inline int pool_threads() {
  const char *env = std::getenv("ZOO_ONEDNN_THREADS");
  return env && std::atoi(env) > 0 ? std::atoi(env) : usable_cores();
}

// Runs op while the pool's helpers are awake (they spin between its parallel_for calls).
template <class Op>
int with_active(Pool *pool, Op op) {
  pool->set_active(true);
  struct Idle {  // helpers sleep again however op returns
    Pool *pool;
    ~Idle() { pool->set_active(false); }
  } idle{pool};
  return op();
}

// What the element-wise kernels share (fused_layers.cc, lstm_gates.cc): in an unnamed namespace,
// so every shared object that includes this header has its own pool and lock.
namespace {

// below this many values a kernel runs on the calling thread alone: waking a helper costs more
constexpr int64_t kParallelValues = 16384;

inline Pool *kernel_pool() {
  static Pool *pool = new Pool(pool_threads());  // lives as long as the process
  return pool;
}

// fn(first, end) over [0, count) (count items of ``values`` values in all), the ranges shared by
// the pool's threads; one parallel region at a time (MindSpore may launch kernels from several
// threads, and a Pool runs one parallel_for at a time)
inline void parallel_ranges(int64_t count, int64_t values,
                            const std::function<void(int64_t, int64_t)> &fn) {
  Pool *pool = kernel_pool();
  const int threads = pool->threads();
  if (values < kParallelValues || threads == 1 || count < 2) {
    fn(0, count);
    return;
  }
  static std::mutex serial;
  std::lock_guard<std::mutex> lock(serial);
  const int tasks = static_cast<int>(count < threads ? count : threads);
  with_active(pool, [&] {
    pool->parallel_for(tasks, [&](int i, int n) { fn(count * i / n, count * (i + 1) / n); });
    return 0;
  });
}

}  // namespace

}  // namespace zoo

#endif  // ZOO_THREAD_POOL_H_
