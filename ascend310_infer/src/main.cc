/**
 * Ascend 310 offline inference for a single-input MindIR model.
 *
 * Every "*.bin" file in --input0_path holds one preprocessed network input
 * (raw bytes, e.g. float32 (1,3,H,W) for the classifier or (1,T,C,H,W) for
 * ConvLSTM). Files are processed in name order; output k of input "x.bin"
 * is written to "<output_path>/x_k.bin". The mean Predict() latency goes to
 * "<time_path>/test_perform_static.txt".
 */
#include <gflags/gflags.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"
#include "inc/utils.h"

using mindspore::Context;
using mindspore::Graph;
using mindspore::GraphCell;
using mindspore::Model;
using mindspore::ModelType;
using mindspore::MSTensor;
using mindspore::Serialization;
using mindspore::Status;

DEFINE_string(mindir_path, "", "path of the exported MindIR model");
DEFINE_string(input0_path, "", "directory of preprocessed input .bin files");
DEFINE_int32(device_id, 0, "Ascend device id");
DEFINE_string(output_path, "./result_Files", "directory for the output .bin files");
DEFINE_string(time_path, "./time_Result", "directory for the latency summary");
DEFINE_string(precision_mode, "", "optional Ascend precision mode, e.g. allow_fp32_to_fp16");
DEFINE_string(op_select_impl_mode, "", "optional Ascend op select impl mode, e.g. high_precision");

namespace {

int Fail(const std::string &message) {
  std::cerr << "[ERROR] " << message << std::endl;
  return 1;
}

std::string ShapeToString(const std::vector<int64_t> &shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    text += (i == 0 ? "" : ",") + std::to_string(shape[i]);
  }
  return text + ")";
}

std::shared_ptr<Context> MakeAscendContext() {
  auto context = std::make_shared<Context>();
  auto ascend310 = std::make_shared<mindspore::Ascend310DeviceInfo>();
  ascend310->SetDeviceID(static_cast<uint32_t>(FLAGS_device_id));
  if (!FLAGS_precision_mode.empty()) {
    ascend310->SetPrecisionMode(FLAGS_precision_mode);
  }
  if (!FLAGS_op_select_impl_mode.empty()) {
    ascend310->SetOpSelectImplMode(FLAGS_op_select_impl_mode);
  }
  context->MutableDeviceInfo().push_back(ascend310);
  return context;
}

bool WriteLatency(const std::string &time_dir, double total_ms, size_t count) {
  const double average = count == 0 ? 0.0 : total_ms / static_cast<double>(count);
  std::cout << "NN inference cost average time: " << average << " ms of infer_count " << count << std::endl;
  std::ofstream out(time_dir + "/test_perform_static.txt", std::ios::trunc);
  out << "NN inference cost average time: " << average << " ms of infer_count " << count << std::endl;
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char **argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);

  if (FLAGS_device_id < 0) {
    return Fail("--device_id must be >= 0, got " + std::to_string(FLAGS_device_id));
  }
  const std::string mindir_path = infer_utils::RealPath(FLAGS_mindir_path);
  if (mindir_path.empty()) {
    return Fail("MindIR file not found: --mindir_path='" + FLAGS_mindir_path + "'");
  }
  const std::string input_dir = infer_utils::RealPath(FLAGS_input0_path);
  if (input_dir.empty() || !infer_utils::IsDirectory(input_dir)) {
    return Fail("input directory not found: --input0_path='" + FLAGS_input0_path + "'");
  }
  const std::vector<std::string> input_files = infer_utils::ListBinFiles(input_dir);
  if (input_files.empty()) {
    return Fail("no .bin files in " + input_dir);
  }

  Graph graph;
  Status ret = Serialization::Load(mindir_path, ModelType::kMindIR, &graph);
  if (ret != mindspore::kSuccess) {
    return Fail("failed to load MindIR " + mindir_path + ": " + ret.ToString());
  }
  Model model;
  ret = model.Build(GraphCell(graph), MakeAscendContext());
  if (ret != mindspore::kSuccess) {
    return Fail("failed to build model on device " + std::to_string(FLAGS_device_id) + ": " + ret.ToString());
  }

  const std::vector<MSTensor> model_inputs = model.GetInputs();
  if (model_inputs.size() != 1) {
    return Fail("expected a single-input model, got " + std::to_string(model_inputs.size()) + " inputs");
  }
  const MSTensor &model_input = model_inputs[0];
  std::cout << "model input '" << model_input.Name() << "' shape " << ShapeToString(model_input.Shape()) << ", "
            << model_input.DataSize() << " bytes" << std::endl;
  if (!infer_utils::MakeDirs(FLAGS_output_path) || !infer_utils::MakeDirs(FLAGS_time_path)) {
    return Fail("cannot create output directories '" + FLAGS_output_path + "' / '" + FLAGS_time_path + "'");
  }

  double total_ms = 0.0;
  std::vector<char> buffer;
  for (const std::string &file : input_files) {
    if (!infer_utils::ReadFile(file, &buffer)) {
      return Fail("cannot read " + file);
    }
    if (buffer.size() != model_input.DataSize()) {
      return Fail(file + " has " + std::to_string(buffer.size()) + " bytes but model input '" + model_input.Name() +
                  "' " + ShapeToString(model_input.Shape()) + " needs " + std::to_string(model_input.DataSize()));
    }

    // Wrap the bytes with the model input's name/dtype/shape; `buffer` stays
    // untouched until Predict() has returned.
    std::vector<MSTensor> inputs;
    inputs.emplace_back(model_input.Name(), model_input.DataType(), model_input.Shape(), buffer.data(),
                        buffer.size());
    std::vector<MSTensor> outputs;

    const auto start = std::chrono::steady_clock::now();
    ret = model.Predict(inputs, &outputs);
    const auto end = std::chrono::steady_clock::now();
    if (ret != mindspore::kSuccess) {
      return Fail("predict failed for " + file + ": " + ret.ToString());
    }
    total_ms += std::chrono::duration<double, std::milli>(end - start).count();

    const std::string stem = infer_utils::FileStem(file);
    for (size_t k = 0; k < outputs.size(); ++k) {
      const std::string out_file = FLAGS_output_path + "/" + stem + "_" + std::to_string(k) + ".bin";
      const std::shared_ptr<const void> data = outputs[k].Data();
      if (data == nullptr || !infer_utils::WriteFile(out_file, data.get(), outputs[k].DataSize())) {
        return Fail("cannot write " + out_file);
      }
    }
    std::cout << "inferred " << file << " -> " << outputs.size() << " output(s)" << std::endl;
  }

  if (!WriteLatency(FLAGS_time_path, total_ms, input_files.size())) {
    return Fail("cannot write " + FLAGS_time_path + "/test_perform_static.txt");
  }
  return 0;
}
