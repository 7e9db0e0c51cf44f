// safetensors reader and writer: byte-exact round trips, every dtype's values, files written by
// Python (tests/fixtures/make_fixtures.py, struct + json, no pare), and malformed input.
#include "io/safetensors.h"

#include <cmath>
#include <limits>

#include "test_util.h"

namespace pare {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using pare_test::TempDir;

// Bitwise equality (NaN == NaN, -0 != +0) of two tensors of the same dtype and shape.
void expect_same_bits(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.scalar_type(), want.scalar_type()) << what;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  torch::Tensor g = got.contiguous(), w = want.contiguous();
  if (g.is_floating_point()) {
    auto as_int = g.element_size() == 8   ? torch::kInt64
                  : g.element_size() == 4 ? torch::kInt32
                                          : torch::kInt16;
    g = g.view(as_int);
    w = w.view(as_int);
  }
  EXPECT_TRUE(torch::equal(g, w)) << what << "\ngot\n" << got << "\nwant\n" << want;
}

// The values make_fixtures.py stores, spelled out independently here.
std::map<std::string, torch::Tensor> python_fixture_values() {
  std::map<std::string, torch::Tensor> t;
  t["f32"] = torch::tensor({-0.5f, -0.25f, 0.0f, 0.25f, 0.5f, 0.75f}).view({2, 3});
  t["f16"] = torch::tensor({1.5, -2.25, 65504.0, std::ldexp(1.0, -14), 0.0, -0.0})
                 .to(torch::kFloat16);
  t["bf16"] = torch::tensor({1.0, -3.5, std::ldexp(1.0, 100), 0.0078125})
                  .to(torch::kBFloat16)
                  .view({2, 2});
  t["f64"] = torch::tensor({M_PI, -1e-300}, torch::kFloat64);
  t["i8"] = torch::tensor({-128, -1, 0, 1, 127}, torch::kInt8);
  t["u8"] = torch::tensor({0, 1, 128, 200, 254, 255}, torch::kUInt8).view({2, 3});
  t["i16"] = torch::tensor({-32768, 32767}, torch::kInt16);
  t["i32"] = torch::tensor({std::numeric_limits<int32_t>::min(), 2147483647, 7}, torch::kInt32);
  t["i64"] = torch::tensor({-(int64_t(1) << 62), (int64_t(1) << 40) + 3}, torch::kInt64);
  t["bool"] = torch::tensor({true, false, true}, torch::kBool);
  t["empty"] = torch::zeros({0, 3}, torch::kFloat32);
  t["scalar"] = torch::full({}, 2.5f);
  return t;
}

TEST(Safetensors, ReadsFileWrittenByPython) {
  // py_dtypes.safetensors: tensors in reverse name order, unaligned offsets, header unpadded,
  // __metadata__ last.
  const std::string path = pare_test::fixture("py_dtypes.safetensors");
  SafetensorsFile f = read_safetensors(path);
  auto want = python_fixture_values();
  ASSERT_EQ(f.tensors.size(), want.size());
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(f.tensors.count(name)) << name;
    expect_same_bits(f.tensors.at(name), w, name);
  }
  EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{{"format", "pt"},
                                                             {"source", "make_fixtures.py"}}));
}

TEST(Safetensors, WriterMatchesPythonCanonicalLayoutByteForByte) {
  // py_canonical.safetensors is the documented writer layout (tensors sorted by name, metadata
  // first, compact JSON, header padded with spaces to 8 bytes), produced by Python.
  const std::string canonical = pare_test::read_bytes(pare_test::fixture("py_canonical.safetensors"));
  SafetensorsFile f = read_safetensors(pare_test::fixture("py_dtypes.safetensors"));
  EXPECT_EQ(serialize_safetensors(f.tensors, f.metadata), canonical);
  EXPECT_EQ(serialize_safetensors(python_fixture_values(), f.metadata), canonical);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(canonical[i]);
  EXPECT_EQ((8 + n) % 8, 0u) << "the data buffer starts 8-byte aligned";
  EXPECT_EQ(canonical[8 + n - 1], ' ') << "fixture: this header needs padding";
}

TEST(Safetensors, WriteReadWriteGivesIdenticalBytes) {
  TempDir tmp;
  torch::manual_seed(7);
  std::map<std::string, torch::Tensor> t;
  t["a.f32"] = torch::randn({3, 5});
  t["b.f16"] = torch::randn({4, 2}).to(torch::kFloat16);
  t["c.bf16"] = torch::randn({7}).to(torch::kBFloat16);
  t["d.i8"] = torch::randint(-128, 128, {2, 3, 2}).to(torch::kInt8);
  t["e.u8"] = torch::randint(0, 256, {9}).to(torch::kUInt8);
  t["f.f64"] = torch::randn({2, 2}, torch::kFloat64);
  t["g.i64"] = torch::randint(-1000, 1000, {3}).to(torch::kInt64);
  std::map<std::string, std::string> meta{{"format", "pt"}, {"note", "round trip"}};

  const std::string p1 = tmp.file("one.safetensors"), p2 = tmp.file("two.safetensors");
  write_safetensors(p1, t, meta);
  const std::string b1 = pare_test::read_bytes(p1);
  EXPECT_EQ(b1, serialize_safetensors(t, meta));
  // Header length field and 8-byte alignment of the data buffer.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(b1[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(b1[8], '{');

  SafetensorsFile f = read_safetensors(p1);
  EXPECT_EQ(f.metadata, meta);
  ASSERT_EQ(f.tensors.size(), t.size());
  for (const auto& [name, w] : t) expect_same_bits(f.tensors.at(name), w, name);

  write_safetensors(p2, f.tensors, f.metadata);
  EXPECT_EQ(pare_test::read_bytes(p2), b1);
  // No temporary files left beside the outputs.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2);
}

TEST(Safetensors, EachDtypeRoundTripsItsValues) {
  TempDir tmp;
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    const char* name;
    torch::Tensor t;
    const char* dtype;
  };
  std::vector<Case> cases = {
      {"f32", torch::tensor({0.1f, -1e-30f, 3.4e38f, inf, -inf, nan, -0.0f}), "F32"},
      {"f16", torch::tensor({0.1f, -65504.f, 6e-8f, inf, nan, -0.0f}).to(torch::kFloat16), "F16"},
      {"bf16", torch::tensor({0.1f, -3e38f, 1e-38f, -inf, nan, 7.0f}).to(torch::kBFloat16),
       "BF16"},
      {"i8", torch::tensor({-128, -7, 0, 5, 127}, torch::kInt8), "I8"},
      {"u8", torch::tensor({0, 7, 127, 128, 255}, torch::kUInt8), "U8"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(safetensors_dtype_name(c.t.scalar_type()), c.dtype);
    const std::string p = tmp.file(std::string(c.name) + ".safetensors");
    torch::Tensor t2 = c.t.view({1, -1}).expand({2, -1}).t();  // non-contiguous [n, 2]
    write_safetensors(p, {{"x", c.t}, {"y", t2}});
    SafetensorsFile f = read_safetensors(p);
    expect_same_bits(f.tensors.at("x"), c.t, "x");
    expect_same_bits(f.tensors.at("y"), t2.contiguous(), "y (written from a non-contiguous view)");
    EXPECT_TRUE(f.tensors.at("y").is_contiguous());
    // The header states the dtype name and shape.
    const std::string bytes = pare_test::read_bytes(p);
    EXPECT_THAT(bytes, HasSubstr(std::string("\"dtype\":\"") + c.dtype + "\""));
  }
  // Bit patterns survive exactly: every 16-bit pattern of f16 and bf16 (NaNs included).
  for (auto dt : {torch::kFloat16, torch::kBFloat16}) {
    torch::Tensor bits = torch::arange(-32768, 32768, torch::kInt32).to(torch::kInt16);
    torch::Tensor t = bits.view(dt);
    const std::string p = tmp.file("all_bits.safetensors");
    write_safetensors(p, {{"t", t}});
    expect_same_bits(read_safetensors(p).tensors.at("t"), t, "all 16-bit patterns");
  }
}

// ---------------------------------------------------------------------------------------------
// Malformed files: each throws InputError naming the file.

std::string file_with_header(const std::string& header, const std::string& data) {
  return pare_test::le64(header.size()) + header + data;
}

class SafetensorsBadInput : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& bytes) {
    std::string p = tmp_.file(name);
    pare_test::write_bytes(p, bytes);
    return p;
  }
  TempDir tmp_;
};

TEST_F(SafetensorsBadInput, FileShorterThanEightBytes) {
  for (const std::string& bytes : {std::string(), std::string("\x02\x00\x00", 3),
                                  std::string("\x02\x00\x00\x00\x00\x00\x00", 7)}) {
    std::string p = write("short.safetensors", bytes);
    EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("8")));
  }
}

TEST_F(SafetensorsBadInput, MissingFile) {
  std::string p = tmp_.file("absent.safetensors");
  EXPECT_INPUT_ERROR(read_safetensors(p), HasSubstr(p));
}

TEST_F(SafetensorsBadInput, HeaderLengthPastEndOfFile) {
  std::string p = write("long_header.safetensors", pare_test::le64(1000) + "{}      ");
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("1000")));
  // A length whose 8 + n overflows 64 bits must not wrap around.
  p = write("huge_header.safetensors", pare_test::le64(~uint64_t(0) - 3) + "{}      ");
  EXPECT_INPUT_ERROR(read_safetensors(p), HasSubstr(p));
}

TEST_F(SafetensorsBadInput, InvalidJsonHeader) {
  std::string p = write("bad_json.safetensors", file_with_header("{\"x\": {\"dtype\": ", ""));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("JSON")));
  p = write("not_object.safetensors", file_with_header("[1, 2, 3]", ""));
  EXPECT_INPUT_ERROR(read_safetensors(p), HasSubstr(p));
  p = write("entry_not_object.safetensors", file_with_header(R"({"x": 5})", ""));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("'x'")));
}

TEST_F(SafetensorsBadInput, DataOffsetsPastEndOfData) {
  // A valid file cut short: 16 bytes declared, 8 present.
  std::string h = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  std::string p = write("truncated.safetensors", file_with_header(h, std::string(8, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("'w'")));
  // Truncating a real file anywhere inside the data buffer is detected too.
  std::string full = pare_test::read_bytes(pare_test::fixture("tiny_vit_io.safetensors"));
  p = write("cut.safetensors", full.substr(0, full.size() - 5));
  EXPECT_INPUT_ERROR(read_safetensors(p), HasSubstr(p));
}

TEST_F(SafetensorsBadInput, SpanDisagreesWithShapeAndDtype) {
  std::string h = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})";
  std::string p = write("span.safetensors", file_with_header(h, std::string(16, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p),
                     AllOf(HasSubstr(p), HasSubstr("'w'"), HasSubstr("16"), HasSubstr("12")));
  // Same span, dtype of another width: F16 [4] needs 8 bytes, not 16.
  h = R"({"w":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}})";
  p = write("span16.safetensors", file_with_header(h, std::string(16, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("'w'")));
  // Reversed offsets.
  h = R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}})";
  p = write("reversed.safetensors", file_with_header(h, std::string(16, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), HasSubstr(p));
}

TEST_F(SafetensorsBadInput, UnknownDtype) {
  std::string h = R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})";
  std::string p = write("dtype.safetensors", file_with_header(h, std::string(2, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("F8_E4M3")));
  h = R"({"w":{"dtype":7,"shape":[2],"data_offsets":[0,2]}})";
  p = write("dtype_int.safetensors", file_with_header(h, std::string(2, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), HasSubstr(p));
}

TEST_F(SafetensorsBadInput, BadShapeAndOverlap) {
  std::string h = R"({"w":{"dtype":"U8","shape":[-2],"data_offsets":[0,2]}})";
  std::string p = write("neg.safetensors", file_with_header(h, std::string(2, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("'w'")));
  h = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})";
  p = write("overlap.safetensors", file_with_header(h, std::string(8, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("overlap")));
  // A range nested inside another.
  h = R"({"a":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},)"
      R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})";
  p = write("overlap_inside.safetensors", file_with_header(h, std::string(16, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("overlap")));
}

// Known bug (src/io/safetensors.cpp, overlap check at the end of read_safetensors): each range is
// compared only with the previous one in sorted order, and empty ranges are skipped by
// `|| first == second`, so an empty tensor sorted between two overlapping ones hides the overlap:
// a [0, 10), b [1, 1) (empty), c [5, 6) is accepted. Fix: keep the largest end seen so far over
// the non-empty ranges and compare each non-empty range's begin with it. Enable with the fix.
TEST_F(SafetensorsBadInput, EmptyTensorDoesNotHideOverlap) {
  std::string h = R"({"a":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},)"
                  R"("b":{"dtype":"U8","shape":[0],"data_offsets":[1,1]},)"
                  R"("c":{"dtype":"U8","shape":[1],"data_offsets":[5,6]}})";
  std::string p = write("overlap_hidden.safetensors", file_with_header(h, std::string(16, '\0')));
  EXPECT_INPUT_ERROR(read_safetensors(p), AllOf(HasSubstr(p), HasSubstr("overlap")));
}

TEST(SafetensorsWriter, RejectsUnsupportedDtype) {
  EXPECT_INPUT_ERROR(serialize_safetensors({{"c", torch::zeros({2}, torch::kComplexFloat)}}),
                     HasSubstr("dtype"));
}

}  // namespace
}  // namespace pare
