// Helpers shared by pare's core tests: fixture paths, temporary folders, file bytes, tensor
// comparisons and "expect an InputError whose message contains ..." checks.
#pragma once

#include "ir/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/graph_data.h"
#include "families/model.h"
#include "io/torch_pickle.h"

namespace pare_test {

namespace fs = std::filesystem;

// tests/fixtures: $PARE_FIXTURES (set by ctest), else found from this header's location.
inline std::string fixtures_dir() {
  if (const char* e = std::getenv("PARE_FIXTURES"); e && *e) return e;
  return (fs::path(__FILE__).parent_path().parent_path() / "fixtures").string();
}
inline std::string fixture(const std::string& rel) { return fixtures_dir() + "/" + rel; }

// A fresh empty folder under ::testing::TempDir(), removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string base = ::testing::TempDir();
    if (base.empty()) base = "/tmp/";
    if (base.back() != '/') base += '/';
    std::string tmpl = base + "pare_test_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    char* p = ::mkdtemp(buf.data());
    if (!p) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("test: cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("test: cannot write " + path);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Little-endian u64, as in the safetensors header length.
inline std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Max |a - b| over all elements, computed in float64.
inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// ‖a - b‖ / ‖b‖ in float64.
inline double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  return ((a64 - b64).norm() / b64.norm()).item<double>();
}

// Runs `fn`, expects a pare::InputError, and returns its message ("" and a failure otherwise).
template <class F>
std::string input_error_message(F&& fn) {
  try {
    fn();
  } catch (const pare::InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected pare::InputError, got another exception: " << e.what();
    return "";
  } catch (...) {
    ADD_FAILURE() << "expected pare::InputError, got a non-std exception";
    return "";
  }
  ADD_FAILURE() << "expected pare::InputError, nothing was thrown";
  return "";
}

// The tiny ViT the core tests build in code: hidden 16, 2 layers, 2 heads, intermediate 32,
// 8x8 single-channel images in 4x4 patches, 3 labels, eps 1e-6.
// The graph batch of fixture tests/fixtures/gps/NAME_io.pt (written by python3-torch), and that
// file's tensors (the expected logits among them) in `tensors` when asked.
inline pare::GraphBatch gps_fixture_batch(const std::string& name,
                                          std::map<std::string, torch::Tensor>* tensors = nullptr) {
  const auto t = pare::read_torch_checkpoint(fixture("gps/" + name + "_io.pt")).tensors;
  auto get = [&](const char* k) { return t.count(k) ? t.at(k) : torch::Tensor(); };
  pare::GraphBatch b;
  b.node_cat = get("node_cat");
  b.node_attr = get("node_attr");
  b.edge_index = get("edge_index");
  b.edge_cat = get("edge_cat");
  b.batch = get("batch");
  b.ptr = get("ptr");
  b.rwse = get("rwse");
  b.lap_vec = get("lap_vec");
  b.lap_val = get("lap_val");
  b.num_graphs = b.ptr.size(0) - 1;
  if (tensors) *tensors = t;
  return b;
}

// Weights of order one, seeded (init's std 0.02 makes every head near-silent and attention
// uniform, which hides what a test looks for): norm weights 1 + 0.3·N(0, 1), other plain tensors
// 0.5·N(0, 1), linear weights N(0, 1/in), biases 0.1·N(0, 1).
inline void order_one_weights(pare::Model& m, uint64_t seed) {
  torch::manual_seed(seed);
  for (auto& [name, t] : m.tensors)
    t = name.find("norm.weight") != std::string::npos ? 1.0 + 0.3 * torch::randn(t.sizes())
                                                       : 0.5 * torch::randn(t.sizes());
  for (auto& [slot, form] : m.linears) {
    auto& d = m.dense(slot);
    d.weight = torch::randn(d.weight.sizes()) / std::sqrt(double(d.weight.size(1)));
    d.bias = 0.1 * torch::randn(d.bias.sizes());
  }
}

inline pare::ArchConfig tiny_vit_config(const std::string& norm) {
  pare::ArchConfig c;
  c.family = "vit";
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.image_size = 8;
  c.patch_size = 4;
  c.num_channels = 1;
  c.num_labels = 3;
  c.layer_norm_eps = 1e-6;
  c.norm = norm;
  c.finalize("test");
  return c;
}

}  // namespace pare_test

// EXPECT_INPUT_ERROR(statement, matcher): the statement throws pare::InputError whose message
// matches (e.g. HasSubstr(path), AllOf(HasSubstr(a), HasSubstr(b))).
#define EXPECT_INPUT_ERROR(statement, matcher) \
  EXPECT_THAT(::pare_test::input_error_message([&] { statement; }), matcher)
