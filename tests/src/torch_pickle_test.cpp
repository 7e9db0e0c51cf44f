// torch.save reader: checkpoints written by Python's torch.save (tests/fixtures/pickle, made by
// make_pickle_fixtures.py) compared with the values Python wrote beside them (NAME.expected.json,
// no pare involved), refused globals, and malformed archives and pickles crafted here with
// LibTorch's own zip writer.
#include "io/torch_pickle.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace pare {
namespace {

using pare_test::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string pickle_fixture(const std::string& name) { return pare_test::fixture("pickle/" + name); }

torch::ScalarType dtype_named(const std::string& name) {
  static const std::map<std::string, torch::ScalarType> kNames = {
      {"float64", torch::kFloat64},   {"float32", torch::kFloat32}, {"float16", torch::kFloat16},
      {"bfloat16", torch::kBFloat16}, {"int64", torch::kInt64},     {"int32", torch::kInt32},
      {"int16", torch::kInt16},       {"int8", torch::kInt8},       {"uint8", torch::kUInt8},
      {"bool", torch::kBool}};
  auto it = kNames.find(name);
  if (it == kNames.end()) throw std::runtime_error("test: unknown dtype " + name);
  return it->second;
}

// {"dtype", "shape", "values"} as Python wrote it; every value is exact in a double or an int64.
torch::Tensor expected_tensor(const nlohmann::json& e) {
  const torch::ScalarType dtype = dtype_named(e["dtype"].get<std::string>());
  const auto shape = e["shape"].get<std::vector<int64_t>>();
  torch::Tensor flat;
  if (c10::isFloatingType(dtype)) {
    flat = torch::tensor(e["values"].get<std::vector<double>>(), torch::kFloat64);
  } else {
    std::vector<int64_t> v;
    for (const auto& x : e["values"])
      v.push_back(x.is_boolean() ? int64_t(x.get<bool>()) : x.get<int64_t>());
    flat = torch::tensor(v, torch::kInt64);
  }
  return flat.to(dtype).reshape(shape).contiguous();
}

void expect_same_tensor(const torch::Tensor& got, const torch::Tensor& want,
                        const std::string& key) {
  ASSERT_EQ(got.scalar_type(), want.scalar_type()) << key;
  ASSERT_EQ(got.sizes(), want.sizes()) << key;
  ASSERT_TRUE(got.is_contiguous()) << key;
  ASSERT_EQ(got.device(), torch::Device(torch::kCPU)) << key;
  const size_t nbytes = static_cast<size_t>(got.numel()) * got.element_size();
  const bool same = std::memcmp(got.data_ptr(), want.data_ptr(), nbytes) == 0;
  EXPECT_TRUE(same) << key << ": bytes differ\ngot\n" << got << "\nwant\n" << want;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints written by Python's torch.save, compared with Python's own values.

class TorchPickleFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchPickleFixture, MatchesPythonExactly) {
  const std::string name = GetParam();
  const TorchCheckpoint ck = read_torch_checkpoint(pickle_fixture(name + ".pt"));
  const nlohmann::json want =
      nlohmann::json::parse(pare_test::read_bytes(pickle_fixture(name + ".expected.json")));
  std::vector<std::string> got_keys, want_keys;
  for (const auto& [k, t] : ck.tensors) got_keys.push_back(k);
  for (const auto& e : want["tensors"].items()) want_keys.push_back(e.key());
  ASSERT_EQ(got_keys, want_keys);
  for (const auto& e : want["tensors"].items())
    expect_same_tensor(ck.tensors.at(e.key()), expected_tensor(e.value()), e.key());
  // dump() tells 1 from 1.0 and true from 1; both objects are sorted by key.
  EXPECT_EQ(ck.scalars.dump(), want["scalars"].dump());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TorchPickleFixture,
                         ::testing::Values("state_dict", "plain_dict", "dtypes", "graphgym"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(TorchPickle, StateDictIgnoresMetadataAttribute) {
  const TorchCheckpoint ck = read_torch_checkpoint(pickle_fixture("state_dict.pt"));
  // embed.weight, embed.bias, norm.weight, norm.bias, head.weight
  EXPECT_EQ(ck.tensors.size(), 5u);
  EXPECT_TRUE(ck.tensors.count("embed.weight"));
  EXPECT_EQ(ck.tensors.at("embed.weight").sizes(), (std::vector<int64_t>{4, 3}));
  // _metadata is an attribute (set by BUILD), not an item.
  EXPECT_TRUE(ck.scalars.empty()) << ck.scalars.dump();
}

TEST(TorchPickle, GraphGymLayoutPaths) {
  const TorchCheckpoint ck = read_torch_checkpoint(pickle_fixture("graphgym.pt"));
  for (const char* k : {"model_state.model.layers.0.norm1_local.weight",
                        "model_state.model.layers.0.batch_norm.num_batches_tracked",
                        "model_state.model.post_mp.weight", "optimizer_state.state.0.exp_avg",
                        "optimizer_state.state.0.step"})
    EXPECT_TRUE(ck.tensors.count(k)) << k;
  const std::string tracked = "model_state.model.layers.0.batch_norm.num_batches_tracked";
  EXPECT_EQ(ck.tensors.at(tracked).item<int64_t>(), 1);
  EXPECT_EQ(ck.tensors.at("optimizer_state.state.0.step").dim(), 0);
  EXPECT_EQ(ck.scalars.at("epoch"), 3);
  EXPECT_EQ(ck.scalars.at("optimizer_state.param_groups.0.lr"), 0.5);
  EXPECT_EQ(ck.scalars.at("optimizer_state.param_groups.0.betas.1"), 0.999);
  EXPECT_EQ(ck.scalars.at("optimizer_state.param_groups.0.params.0"), 0);
  EXPECT_TRUE(ck.scalars.at("optimizer_state.param_groups.0.foreach").is_null());
  EXPECT_EQ(ck.scalars.at("scheduler_state.step_size"), 2);
}

TEST(TorchPickle, ViewsAreCopiedOutOfTheirStorage) {
  const TorchCheckpoint ck = read_torch_checkpoint(pickle_fixture("dtypes.pt"));
  // base = arange(12) / 8 viewed as [3, 4] and transposed: row i is column i of the original.
  const torch::Tensor tr = ck.tensors.at("transposed");
  EXPECT_EQ(tr.sizes(), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(tr[1][2].item<float>(), 9.0f / 8);
  // shared_a and shared_b come from one storage but own separate memory.
  const torch::Tensor a = ck.tensors.at("shared_a"), b = ck.tensors.at("shared_b");
  EXPECT_EQ(a[0].item<int32_t>(), 2 * 3 - 7);
  EXPECT_EQ(b[0][0].item<int32_t>(), 5 * 3 - 7);
  EXPECT_NE(a.data_ptr(), b.data_ptr());
  EXPECT_EQ(ck.tensors.at("expanded").sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(ck.tensors.at("zero_dim").dim(), 0);
  EXPECT_EQ(ck.scalars.at("scalars.7"), "int key");
  EXPECT_EQ(ck.scalars.at("scalars.neg_big"), -(int64_t(1) << 40) - 1);
}

// ---------------------------------------------------------------------------------------------
// Refused and broken files from the fixtures.

TEST(TorchPickle, RefusesForbiddenGlobal) {
  const std::string path = pickle_fixture("forbidden_global.pt");
  EXPECT_INPUT_ERROR(read_torch_checkpoint(path), AllOf(HasSubstr(path), HasSubstr("data.pkl"),
                                                        HasSubstr("refusing global 'os.system'")));
}

TEST(TorchPickle, TruncatedFileIsInputError) {
  const std::string path = pickle_fixture("truncated.pt");
  EXPECT_INPUT_ERROR(read_torch_checkpoint(path),
                     AllOf(HasSubstr(path), HasSubstr("not a readable torch.save zip archive")));
}

TEST(TorchPickle, TensorPastItsStorageNamesTheKey) {
  const std::string path = pickle_fixture("bad_extent.pt");
  EXPECT_INPUT_ERROR(read_torch_checkpoint(path),
                     AllOf(HasSubstr(path), HasSubstr("tensor 'w'"), HasSubstr("data/0"),
                           HasSubstr("reach element 4"), HasSubstr("has 4 elements")));
}

TEST(TorchPickle, LegacyFormatSaysReSave) {
  const std::string path = pickle_fixture("legacy.pt");
  EXPECT_INPUT_ERROR(read_torch_checkpoint(path),
                     AllOf(HasSubstr(path), HasSubstr("legacy"), HasSubstr("torch >= 1.6")));
}

TEST(TorchPickle, MissingAndNonZipFiles) {
  TempDir dir;
  EXPECT_INPUT_ERROR(read_torch_checkpoint(dir.file("none.pt")),
                     AllOf(HasSubstr(dir.file("none.pt")), HasSubstr("cannot open")));
  const std::string text = dir.file("text.pt");
  pare_test::write_bytes(text, "this is not a checkpoint, just some text long enough\n");
  EXPECT_INPUT_ERROR(read_torch_checkpoint(text),
                     AllOf(HasSubstr(text), HasSubstr("not a readable torch.save zip archive")));
  const std::string empty = dir.file("empty.pt");
  pare_test::write_bytes(empty, "");
  EXPECT_INPUT_ERROR(read_torch_checkpoint(empty), HasSubstr(empty));
}

// Every prefix of a valid file is refused with an InputError (the zip reader finds no central
// directory), and flipping any single byte either still loads or is an InputError: never a
// crash or another exception (the zip reader does not check CRCs, so flips reach the unpickler).
TEST(TorchPickle, EveryTruncationAndByteFlipIsHandled) {
  const std::string bytes = pare_test::read_bytes(pickle_fixture("state_dict.pt"));
  TempDir dir;
  // A fresh file each time: rewriting one file is ~1000x slower on some file systems.
  int files = 0;
  auto write = [&](const std::string& data) {
    const std::string path = dir.file(std::to_string(files++) + ".pt");
    pare_test::write_bytes(path, data);
    return path;
  };
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string path = write(bytes.substr(0, n));
    EXPECT_INPUT_ERROR(read_torch_checkpoint(path), HasSubstr(path))
        << "prefix of " << n << " bytes";
  }
  size_t loaded = 0;
  for (size_t k = 0; k < bytes.size(); ++k) {
    std::string flipped = bytes;
    flipped[k] = static_cast<char>(flipped[k] ^ 0x5a);
    const std::string path = write(flipped);
    try {
      read_torch_checkpoint(path);
      ++loaded;
    } catch (const InputError& e) {
      EXPECT_THAT(e.what(), HasSubstr(path)) << "byte " << k;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "byte " << k << ": not an InputError: " << e.what();
    }
  }
  EXPECT_GT(loaded, 0u);  // flips inside storage bytes only change values
}

// ---------------------------------------------------------------------------------------------
// Pickles crafted here, in archives written by LibTorch's zip writer (the layout torch.save uses).

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}
std::string le(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}
const std::string kProto2 = bytes({0x80, 2});
std::string ustr(const std::string& s) { return "X" + le(s.size(), 4) + s; }
std::string global(const std::string& module, const std::string& name) {
  return "c" + module + "\n" + name + "\n";
}
// _rebuild_tensor_v2(('storage', STORAGE, '0', 'cpu', numel), 0, (size,), (1,), False,
// OrderedDict())
std::string tensor_of(int numel, int size, const std::string& storage = "FloatStorage") {
  return global("torch._utils", "_rebuild_tensor_v2") + "((" + ustr("storage") +
         global("torch", storage) + ustr("0") + ustr("cpu") + "K" + bytes({numel}) + "tQ" + "K" +
         bytes({0}) + "K" + bytes({size}) + bytes({0x85}) + "K" + bytes({1}) + bytes({0x85, 0x89}) +
         global("collections", "OrderedDict") + ")Rt" + "R";
}

class Crafted : public ::testing::Test {
 protected:
  // An archive holding data.pkl = `pickle` and the given records.
  std::string archive(const std::string& pickle,
                      const std::map<std::string, std::string>& records = {}) {
    const std::string path = dir_.file("crafted.pt");
    caffe2::serialize::PyTorchStreamWriter w(path);
    w.writeRecord("data.pkl", pickle.data(), pickle.size());
    for (const auto& [name, data] : records) w.writeRecord(name, data.data(), data.size());
    w.writeEndOfFile();
    return path;
  }
  std::string error(const std::string& pickle,
                    const std::map<std::string, std::string>& records = {}) {
    const std::string path = archive(pickle, records);
    return pare_test::input_error_message([&] { read_torch_checkpoint(path); });
  }
  TempDir dir_;
};

using TorchPickleCrafted = Crafted;

TEST_F(TorchPickleCrafted, ProtocolFourOpcodesAndScalars) {
  std::string body =
      global("collections", "OrderedDict") + ")" + bytes({0x81, 0x94}) + "(";  // NEWOBJ, MEMOIZE
  body += bytes({0x8d}) + le(3, 8) + "big" + bytes({0x8a, 5}) +
          le(0xFE00000000ull, 5);  // BINUNICODE8, LONG1 -2^33
  body += bytes({0x8c, 3}) + "neg" + "J" + le(static_cast<uint32_t>(-5), 4);  // BININT
  body += bytes({0x8c, 4}) + "pair" + "M" + le(700, 2) + "K" + bytes({1, 0x86}) + "r" + le(1000, 4);
  body += bytes({0x8c, 5}) + "again" + "j" + le(1000, 4);         // LONG_BINGET
  body += bytes({0x8c, 3}) + "set" + "(K" + bytes({9, 0x91});     // FROZENSET
  body += bytes({0x8c, 3}) + "lst" + "(N" + bytes({0x88}) + "l";  // LIST
  body += bytes({0x8c, 3}) + "dct" + "(" + bytes({0x8c, 1}) + "kG" +
          bytes({0x3f, 0xe0, 0, 0, 0, 0, 0, 0}) + "d";
  body += bytes({0x8c, 3}) + "dup" + "N20";                                          // DUP, POP
  body += bytes({0x8c, 2}) + "pm" + "N(K" + bytes({1}) + "1";                        // POP_MARK
  body += bytes({0x8c, 2}) + "l4" + bytes({0x8b}) + le(2, 4) + bytes({0xff, 0x7f});  // LONG4
  body += bytes({0x8c, 1}) + "t" + tensor_of(2, 2);
  body += "u.";
  const std::string pickle = bytes({0x80, 4, 0x95}) + le(body.size(), 8) + body;
  const TorchCheckpoint ck =
      read_torch_checkpoint(archive(pickle, {{"data/0", le(0x3f800000, 4) + le(0xc0000000, 4)}}));
  const nlohmann::json want = {{"big", -(int64_t(1) << 33)},
                               {"neg", -5},
                               {"pair.0", 700},
                               {"pair.1", 1},
                               {"again.0", 700},
                               {"again.1", 1},
                               {"set.0", 9},
                               {"lst.0", nullptr},
                               {"lst.1", true},
                               {"dct.k", 0.5},
                               {"dup", nullptr},
                               {"pm", nullptr},
                               {"l4", 32767}};
  EXPECT_EQ(ck.scalars.dump(), want.dump());
  ASSERT_EQ(ck.tensors.size(), 1u);
  EXPECT_TRUE(torch::equal(ck.tensors.at("t"), torch::tensor({1.0f, -2.0f})));
}

TEST_F(TorchPickleCrafted, RootScalarHasEmptyPath) {
  const TorchCheckpoint ck = read_torch_checkpoint(archive(kProto2 + "K" + bytes({7}) + "."));
  EXPECT_EQ(ck.scalars.dump(), R"({"":7})");
}

TEST_F(TorchPickleCrafted, OpcodeErrorsNameByteAndOffset) {
  EXPECT_THAT(error(kProto2 + bytes({0xff}) + "."),
              AllOf(HasSubstr("data.pkl"), HasSubstr("unknown pickle opcode 0xff at offset 2")));
  EXPECT_THAT(error(kProto2 + "N" + bytes({'C', 2}) + "xy."),
              HasSubstr("unsupported pickle opcode 0x43 (SHORT_BINBYTES) at offset 3"));
  EXPECT_THAT(error(kProto2 + "X" + le(16, 4) + "ab"),
              AllOf(HasSubstr("BINUNICODE at offset 2"), HasSubstr("needs 16 bytes at offset 7")));
  EXPECT_THAT(error(kProto2 + "N"), HasSubstr("truncated at offset 3"));
  EXPECT_THAT(error(kProto2 + "h" + bytes({5}) + "."),
              HasSubstr("BINGET at offset 2: memo entry 5"));
  EXPECT_THAT(error(kProto2 + "N" + "s."), HasSubstr("SETITEM at offset 3: needs 1 value(s)"));
  EXPECT_THAT(error(kProto2 + "Nu."), HasSubstr("SETITEMS at offset 3: no MARK"));
  EXPECT_THAT(error(kProto2 + "]NNs."), HasSubstr("target is a list, expected a dict"));
  EXPECT_THAT(error(bytes({0x80, 9}) + "N."), HasSubstr("pickle protocol 9"));
}

TEST_F(TorchPickleCrafted, RefusesEverythingButStateDictGlobals) {
  for (const auto& [module, name] : std::vector<std::pair<std::string, std::string>>{
           {"builtins", "eval"},
           {"torch", "load"},
           {"torch._utils", "_rebuild_qtensor"},
           {"collections", "defaultdict"},
           {"numpy.core.multiarray", "_reconstruct"}}) {
    EXPECT_THAT(error(kProto2 + global(module, name) + ")R."),
                HasSubstr("refusing global '" + module + "." + name + "'"));
    // STACK_GLOBAL is checked the same way.
    EXPECT_THAT(error(bytes({0x80, 4}) + ustr(module) + ustr(name) + bytes({0x93}) + "."),
                HasSubstr("refusing global '" + module + "." + name + "'"));
  }
  EXPECT_THAT(error(kProto2 + global("torch", "ComplexFloatStorage") + "."),
              HasSubstr("storage type 'torch.ComplexFloatStorage' is not supported"));
  EXPECT_THAT(error(kProto2 + global("torch", "FloatStorage") + ")R."),
              HasSubstr("'torch.FloatStorage' cannot be called"));
  EXPECT_THAT(error(kProto2 + "}}b."), HasSubstr("cannot set the state of a dict"));
  EXPECT_THAT(error(kProto2 + global("collections", "OrderedDict") + "."),
              HasSubstr("value at '' is a bare global"));
}

TEST_F(TorchPickleCrafted, StorageAndTensorErrorsNameTheKey) {
  const std::string one = kProto2 + "}" + ustr("w") + tensor_of(4, 2) + "s.";
  EXPECT_THAT(
      error(one, {{"data/0", std::string(12, '\0')}}),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("data/0 has 12 bytes"), HasSubstr("needs 16")));
  EXPECT_THAT(error(one), AllOf(HasSubstr("tensor 'w'"), HasSubstr("data/0 is missing")));
  EXPECT_THAT(error(kProto2 + "}" + ustr("w") + tensor_of(4, 5) + "s.",
                    {{"data/0", std::string(16, '\0')}}),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("reach element 4")));
  EXPECT_THAT(error(kProto2 + "}" + ustr("b") + tensor_of(2, 2, "BoolStorage") + "s.",
                    {{"data/0", bytes({1, 2})}}),
              AllOf(HasSubstr("tensor 'b'"), HasSubstr("bool byte other than 0 or 1")));
}

TEST_F(TorchPickleCrafted, AmbiguousOrCyclicStructure) {
  EXPECT_THAT(error(kProto2 + "}(K" + bytes({1}) + "N" + ustr("1") + "Nu."),
              HasSubstr("two values have the path '1'"));
  EXPECT_THAT(error(kProto2 + "}G" + std::string(8, '\0') + "Ns."), HasSubstr("key of type float"));
  EXPECT_THAT(error(kProto2 + "]q" + bytes({0}) + "h" + bytes({0}) + "a."),
              HasSubstr("nested more than"));
}

TEST_F(TorchPickleCrafted, BigEndianAndTorchScriptAreRefused) {
  EXPECT_THAT(error(kProto2 + "N.", {{"byteorder", "big"}}), HasSubstr("byteorder 'big'"));
  EXPECT_EQ(
      read_torch_checkpoint(archive(kProto2 + "N.", {{"byteorder", "little"}})).scalars.dump(),
      R"({"":null})");
  EXPECT_THAT(error(kProto2 + "N.", {{"constants.pkl", kProto2 + ")."}}), HasSubstr("TorchScript"));
}

}  // namespace
}  // namespace pare
