/**
 * Test-only stand-in for the part of libmindspore.so that src/main.cc uses,
 * compiled against the real MindSpore API headers. It lets the tests build
 * and run out/main without Ascend hardware.
 *
 * A "MindIR" here is a text file: "FAKE_MINDIR <d0> <d1> ...", the float32
 * input shape. Predict() returns two outputs: the input unchanged, and a
 * single float32 holding the sum of the input.
 */
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"

namespace mindspore {
// CharToString / StringToChar come from include/api/dual_abi_helper.h.

// ---- Status ----
struct Status::Data {
  enum StatusCode code;
  std::string message;
};
Status::Status() : Status(kSuccess, std::vector<char>()) {}
Status::Status(enum StatusCode code, const std::vector<char> &message) : data_(std::make_shared<Data>()) {
  data_->code = code;
  data_->message = CharToString(message);
}
bool Status::operator!=(enum StatusCode other) const { return data_->code != other; }
std::vector<char> Status::ToCString() const { return StringToChar(data_->message); }

// ---- Context ----
struct Context::Data {
  std::vector<std::shared_ptr<DeviceInfoContext>> devices;
};
Context::Context() : data_(std::make_shared<Data>()) {}
std::vector<std::shared_ptr<DeviceInfoContext>> &Context::MutableDeviceInfo() { return data_->devices; }

struct DeviceInfoContext::Data {};
DeviceInfoContext::DeviceInfoContext() : data_(std::make_shared<Data>()) {}
void AscendDeviceInfo::SetDeviceID(uint32_t) {}
void AscendDeviceInfo::SetPrecisionMode(const std::vector<char> &) {}
void AscendDeviceInfo::SetOpSelectImplMode(const std::vector<char> &) {}

// ---- MSTensor ----
class MSTensor::Impl {
 public:
  std::string name;
  enum DataType type;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
};
MSTensor::MSTensor(const std::vector<char> &name, enum DataType type, const std::vector<int64_t> &shape,
                   const void *data, size_t data_len)
    : impl_(std::make_shared<Impl>()) {
  impl_->name = CharToString(name);
  impl_->type = type;
  impl_->shape = shape;
  impl_->bytes.resize(data_len);
  if (data != nullptr && data_len > 0) {
    std::copy_n(static_cast<const char *>(data), data_len, impl_->bytes.data());
  }
}
MSTensor::~MSTensor() = default;
std::vector<char> MSTensor::CharName() const { return StringToChar(impl_->name); }
enum DataType MSTensor::DataType() const { return impl_->type; }
const std::vector<int64_t> &MSTensor::Shape() const { return impl_->shape; }
size_t MSTensor::DataSize() const { return impl_->bytes.size(); }
std::shared_ptr<const void> MSTensor::Data() const { return std::shared_ptr<const void>(impl_, impl_->bytes.data()); }

// ---- Graph / GraphCell / Serialization ----
class Graph::GraphData {
 public:
  std::vector<int64_t> input_shape;
};
Graph::Graph() = default;
Graph::Graph(std::shared_ptr<GraphData> &&graph_data) : graph_data_(std::move(graph_data)) {}
Graph::~Graph() = default;
GraphCell::GraphCell(const Graph &graph) : graph_(std::make_shared<Graph>(graph)) {}
Status GraphCell::Run(const std::vector<MSTensor> &, std::vector<MSTensor> *) { return kSuccess; }

Status Serialization::Load(const std::vector<char> &file, ModelType model_type, Graph *graph, const Key &,
                           const std::vector<char> &) {
  std::ifstream in(CharToString(file));
  std::string magic;
  if (model_type != kMindIR || !(in >> magic) || magic != "FAKE_MINDIR") {
    return Status(kMEFailed, "not a fake MindIR: " + CharToString(file));
  }
  auto data = std::make_shared<Graph::GraphData>();
  for (int64_t dim = 0; in >> dim;) {
    data->input_shape.push_back(dim);
  }
  *graph = Graph(std::move(data));
  return kSuccess;
}

// ---- Model ----
class ModelImpl {
 public:
  static const std::shared_ptr<Graph::GraphData> &GraphDataOf(const Graph &graph) { return graph.graph_data_; }
  std::vector<MSTensor> inputs;
};

Model::Model() = default;
Model::~Model() = default;

Status Model::Build(GraphCell graph, const std::shared_ptr<Context> &context, const std::shared_ptr<TrainCfg> &) {
  if (context == nullptr || context->MutableDeviceInfo().size() != 1 ||
      context->MutableDeviceInfo()[0]->GetDeviceType() != kAscend) {
    return Status(kMEFailed, "expected one Ascend device in the context");
  }
  const auto &data = ModelImpl::GraphDataOf(*graph.GetGraph());
  const int64_t count = std::accumulate(data->input_shape.begin(), data->input_shape.end(), int64_t{1},
                                        [](int64_t a, int64_t b) { return a * b; });
  impl_ = std::make_shared<ModelImpl>();
  impl_->inputs.emplace_back("x", DataType::kNumberTypeFloat32, data->input_shape, nullptr,
                             static_cast<size_t>(count) * sizeof(float));
  return kSuccess;
}

std::vector<MSTensor> Model::GetInputs() { return impl_->inputs; }

Status Model::Predict(const std::vector<MSTensor> &inputs, std::vector<MSTensor> *outputs, const MSKernelCallBack &,
                      const MSKernelCallBack &) {
  if (inputs.size() != 1 || inputs[0].DataSize() != impl_->inputs[0].DataSize()) {
    return Status(kMEFailed, "bad inputs");
  }
  const MSTensor &in = inputs[0];
  const auto *values = static_cast<const float *>(in.Data().get());
  const float sum = std::accumulate(values, values + in.DataSize() / sizeof(float), 0.0f);
  outputs->clear();
  outputs->emplace_back("identity", in.DataType(), in.Shape(), in.Data().get(), in.DataSize());
  outputs->emplace_back("sum", DataType::kNumberTypeFloat32, std::vector<int64_t>{1}, &sum, sizeof(sum));
  return kSuccess;
}
}  // namespace mindspore
