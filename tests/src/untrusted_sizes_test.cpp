// Untrusted sizes (issue 25, item 3): files whose headers declare a 100 GB tensor, a 2^40-entry
// vocabulary or 2^50 metadata entries are refused with InputError naming the file and the field,
// before anything of that size is allocated (a std::bad_alloc or a crash would fail these tests;
// the files are a few hundred bytes). Byte layouts written here by hand from the format specs
// (safetensors: 8-byte little-endian header length + JSON; GGUF v3: magic, version, tensor_count,
// kv_count, then key / type / value; llama2.c: seven int32 dims).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "families/checkpoint.h"
#include "io/gguf.h"
#include "ir/config.h"
#include "io/llama2c.h"
#include "test_util.h"

namespace pare {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using pare_test::TempDir;

template <typename T>
std::string le(T v) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &v, sizeof(T));
  return s;
}
std::string gguf_string(const std::string& v) { return le<uint64_t>(v.size()) + v; }
std::string gguf_kv(const std::string& key, uint32_t type, const std::string& value) {
  return gguf_string(key) + le<uint32_t>(type) + value;
}
std::string gguf(uint64_t tensors, uint64_t kvs, const std::string& body) {
  return std::string("GGUF") + le<uint32_t>(3) + le<uint64_t>(tensors) + le<uint64_t>(kvs) + body +
         std::string(64, '\0');
}

TEST(UntrustedSizes, SafetensorsHundredGigabyteTensor) {
  TempDir dir;
  const std::string folder = dir.file("m");
  std::filesystem::create_directories(folder);
  std::filesystem::copy_file(pare_test::fixture("tiny_vit/config.json"), folder + "/config.json");
  const std::string h = R"({"w":{"dtype":"F32","shape":[25000000000],"data_offsets":[0,100000000000]}})";
  pare_test::write_bytes(folder + "/model.safetensors", le<uint64_t>(h.size()) + h + std::string(16, '\0'));
  EXPECT_INPUT_ERROR(load_model(folder), AllOf(HasSubstr("model.safetensors"), HasSubstr("tensor 'w'"),
                                               HasSubstr("data_offsets [0, 100000000000]")));
  // A header length of 2^40 bytes in a small file.
  pare_test::write_bytes(folder + "/model.safetensors", le<uint64_t>(uint64_t(1) << 40) + "{}");
  EXPECT_INPUT_ERROR(load_model(folder), AllOf(HasSubstr("model.safetensors"), HasSubstr("header length")));
}

TEST(UntrustedSizes, GgufBillionEntryVocabularyAndHugeCounts) {
  TempDir dir;
  const std::string p = dir.file("x.gguf");
  const std::string arch = gguf_kv("general.architecture", 8, gguf_string("llama"));
  // tokenizer.ggml.tokens: ARRAY (9) of STRING (8), 2^40 entries.
  pare_test::write_bytes(
      p, gguf(0, 2, arch + gguf_kv("tokenizer.ggml.tokens", 9, le<uint32_t>(8) + le<uint64_t>(uint64_t(1) << 40))));
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("'tokenizer.ggml.tokens'"),
                                         HasSubstr("array of 1099511627776 STRING"), HasSubstr("cannot fit")));
  pare_test::write_bytes(p, gguf(0, uint64_t(1) << 50, ""));
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("kv_count 1125899906842624"), HasSubstr("cannot fit")));
  pare_test::write_bytes(p, gguf(uint64_t(1) << 50, 1, arch));
  EXPECT_INPUT_ERROR(read_gguf(p),
                     AllOf(HasSubstr(p), HasSubstr("tensor_count 1125899906842624"), HasSubstr("cannot fit")));
  // A key whose declared length is 2^60 bytes.
  pare_test::write_bytes(p, std::string("GGUF") + le<uint32_t>(3) + le<uint64_t>(0) + le<uint64_t>(1) +
                                le<uint64_t>(uint64_t(1) << 60) + std::string(32, 'k'));
  EXPECT_INPUT_ERROR(read_gguf(p), HasSubstr(p));
}

TEST(UntrustedSizes, Llama2cHugeDimensions) {
  TempDir dir;
  const std::string p = dir.file("x.bin");
  // dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
  pare_test::write_bytes(p, le<int32_t>(1 << 20) + le<int32_t>(1 << 20) + le<int32_t>(1 << 10) + le<int32_t>(1 << 10) +
                                le<int32_t>(1 << 10) + le<int32_t>(1 << 30) + le<int32_t>(1 << 20) + std::string(64, '\0'));
  EXPECT_INPUT_ERROR(read_llama2c(p), AllOf(HasSubstr(p), HasSubstr("header field dim"), HasSubstr("1048576")));
  // Plausible dims but a 2^30-token vocabulary: the weights it implies are far beyond the file.
  pare_test::write_bytes(p, le<int32_t>(64) + le<int32_t>(128) + le<int32_t>(2) + le<int32_t>(4) + le<int32_t>(4) +
                                le<int32_t>(1 << 30) + le<int32_t>(256) + std::string(64, '\0'));
  EXPECT_INPUT_ERROR(read_llama2c(p), HasSubstr(p));
}

// fuzz_config_json's first finding (fuzz/regressions/config_json/): an integer field holding a
// float beyond int64_t (3.2e39) was converted with undefined behaviour; now refused by name, as
// are integers beyond the field's type.
TEST(UntrustedSizes, ConfigIntegersBeyondTheirType) {
  const nlohmann::json base = nlohmann::json::parse(pare_test::read_bytes(pare_test::fixture("tiny_vit/config.json")));
  for (const char* bad : {"3244444444444444444444444444444444444444", "-1e300", "9.3e18", "18446744073709551615"}) {
    nlohmann::json j = base;
    j["intermediate_size"] = nlohmann::json::parse(bad);
    EXPECT_INPUT_ERROR(config_from_json(j, "x/config.json"),
                       AllOf(HasSubstr("x/config.json"), HasSubstr("intermediate_size: expected")))
        << bad;
  }
  nlohmann::json j = base;
  j["intermediate_size"] = 64.0;  // an integral float that fits is the integer it holds
  EXPECT_EQ(config_from_json(j, "x/config.json").intermediate_size, 64);
}

}  // namespace
}  // namespace pare
