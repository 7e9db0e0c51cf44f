// llama2.c .bin and GGUF readers: the real stories260K model in both formats (shared data,
// $PARE_SHARED_DATA; skipped when absent), the RoPE row reordering against an independent
// interleaved-vs-rotate_half RoPE computation, hand-made files written here (an untied llama2.c
// checkpoint, tiny GGUF files) and malformed input.
#include <cmath>
#include <cstring>
#include <functional>

#include "io/gguf.h"
#include "io/llama2c.h"
#include "test_util.h"

namespace pare {
namespace {

using pare_test::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

// A file of the shared data folder: $PARE_SHARED_DATA, else <source>/../shared/data as CMake's
// default; "" when the file is not there.
std::string shared_file(const std::string& rel) {
  namespace fs = std::filesystem;
  const char* e = std::getenv("PARE_SHARED_DATA");
  fs::path dir = e && *e ? fs::path(e)
                         : fs::path(__FILE__).parent_path().parent_path().parent_path() / ".." /
                               "shared" / "data";
  fs::path p = dir / rel;
  return fs::exists(p) ? p.string() : "";
}

#define SHARED_FILE_OR_SKIP(var, rel)          \
  const std::string var = shared_file(rel);    \
  if (var.empty())                             \
  GTEST_SKIP() << "shared data file " << (rel) \
               << " not found (set PARE_SHARED_DATA to the shared data folder)"

template <class T>
std::string pod(T v) {
  std::string s(sizeof v, '\0');
  std::memcpy(s.data(), &v, sizeof v);
  return s;
}

std::string tensor_bytes(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

torch::Tensor rnd(std::vector<int64_t> shape) { return torch::randn(shape, torch::kFloat32); }

// Independent statement of the q/k row reordering: HF row h*hd + j*hd/2 + i takes interleaved
// row h*hd + 2i + j.
torch::Tensor to_hf_rows(const torch::Tensor& w, int64_t heads) {
  const int64_t hd = w.size(0) / heads;
  std::vector<int64_t> src;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < hd / 2; ++i) src.push_back(h * hd + 2 * i + j);
  return w.index_select(0, torch::tensor(src, torch::kInt64));
}

// llama2.c run.c RoPE on one head vector: pairs (2i, 2i+1), frequency theta^(-2i/hd).
torch::Tensor rope_interleaved(const torch::Tensor& x, int64_t pos, double theta) {
  const int64_t hd = x.size(0);
  auto a = x.accessor<double, 1>();
  torch::Tensor y = x.clone();
  auto b = y.accessor<double, 1>();
  for (int64_t i = 0; i < hd; i += 2) {
    const double angle = pos / std::pow(theta, static_cast<double>(i) / hd);
    b[i] = a[i] * std::cos(angle) - a[i + 1] * std::sin(angle);
    b[i + 1] = a[i] * std::sin(angle) + a[i + 1] * std::cos(angle);
  }
  return y;
}

// HF modeling_llama RoPE: q*cos + rotate_half(q)*sin with emb = cat(freqs, freqs).
torch::Tensor rope_rotate_half(const torch::Tensor& x, int64_t pos, double theta) {
  const int64_t hd = x.size(0);
  auto inv_freq =
      1.0 / torch::pow(theta, torch::arange(0, hd, 2, torch::kFloat64) / static_cast<double>(hd));
  auto emb = torch::cat({inv_freq * pos, inv_freq * pos});
  auto rot = torch::cat({-x.slice(0, hd / 2), x.slice(0, 0, hd / 2)});
  return x * emb.cos() + rot * emb.sin();
}

// Attention scores q_h·k_{h/group} per head, for x_q at position m and x_k at position n.
std::vector<double> scores(const torch::Tensor& wq, const torch::Tensor& wk, int64_t heads,
                           int64_t kv_heads, const torch::Tensor& xq, const torch::Tensor& xk,
                           int64_t m, int64_t n, bool interleaved) {
  const int64_t hd = wq.size(0) / heads;
  auto q = torch::matmul(wq.to(torch::kFloat64), xq), k = torch::matmul(wk.to(torch::kFloat64), xk);
  std::vector<double> out;
  for (int64_t h = 0; h < heads; ++h) {
    auto qh = q.slice(0, h * hd, (h + 1) * hd);
    const int64_t g = h / (heads / kv_heads);
    auto kh = k.slice(0, g * hd, (g + 1) * hd);
    auto rq = interleaved ? rope_interleaved(qh, m, 1e4) : rope_rotate_half(qh, m, 1e4);
    auto rk = interleaved ? rope_interleaved(kh, n, 1e4) : rope_rotate_half(kh, n, 1e4);
    out.push_back(rq.dot(rk).item<double>());
  }
  return out;
}

// The largest score difference between the interleaved RoPE on (wq, wk) and HF RoPE on
// (hf_q, hf_k), over a few random inputs and position pairs.
double max_score_gap(const torch::Tensor& wq, const torch::Tensor& wk, const torch::Tensor& hf_q,
                     const torch::Tensor& hf_k, int64_t heads, int64_t kv_heads) {
  double gap = 0;
  for (auto [m, n] : {std::pair<int64_t, int64_t>{3, 11}, {17, 2}, {40, 41}}) {
    auto xq = torch::randn({wq.size(1)}, torch::kFloat64),
         xk = torch::randn({wq.size(1)}, torch::kFloat64);
    auto a = scores(wq, wk, heads, kv_heads, xq, xk, m, n, true);
    auto b = scores(hf_q, hf_k, heads, kv_heads, xq, xk, m, n, false);
    for (size_t i = 0; i < a.size(); ++i) gap = std::max(gap, std::abs(a[i] - b[i]));
  }
  return gap;
}

// Raw float32 section of a llama2.c file: `count` floats at float index `at` after the header.
torch::Tensor raw_floats(const std::string& bytes, int64_t at, std::vector<int64_t> shape) {
  torch::Tensor t = torch::empty(shape, torch::kFloat32);
  std::memcpy(t.data_ptr(), bytes.data() + 28 + 4 * at, t.numel() * 4);
  return t;
}

// Expects layer `l` of `lm` to hold the file's tensors: `file_names` are the file's names for
// input_layernorm, post_attention_layernorm, q, k, v, o, gate, up, down (q and k in the
// interleaved layout), `file` gives a name's tensor.
void expect_layer(const ImportedLm& lm, int64_t l, const std::vector<std::string>& file_names,
                  const std::function<torch::Tensor(const std::string&)>& file, int64_t heads,
                  int64_t kv_heads) {
  static const char* const hf[] = {
      "input_layernorm",  "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
      "self_attn.v_proj", "self_attn.o_proj",         "mlp.gate_proj",    "mlp.up_proj",
      "mlp.down_proj"};
  ASSERT_EQ(file_names.size(), 9u);
  for (size_t i = 0; i < 9; ++i) {
    torch::Tensor want = file(file_names[i]);
    if (i == 2) want = to_hf_rows(want, heads);
    if (i == 3) want = to_hf_rows(want, kv_heads);
    EXPECT_TRUE(torch::equal(lm.tensors.at(llama_hf_layer_name(l, hf[i])), want))
        << hf[i] << " of layer " << l << " (file " << file_names[i] << ")";
  }
}

void expect_hf_llama_tensors(const ImportedLm& lm) {
  const auto& c = lm.config;
  const int64_t D = c["hidden_size"], L = c["num_hidden_layers"], H = c["intermediate_size"];
  const int64_t V = c["vocab_size"];
  const int64_t KV =
      c["num_key_value_heads"].get<int64_t>() * D / c["num_attention_heads"].get<int64_t>();
  std::map<std::string, std::vector<int64_t>> want = {{"model.embed_tokens.weight", {V, D}},
                                                      {"model.norm.weight", {D}}};
  if (!c["tie_word_embeddings"].get<bool>()) want["lm_head.weight"] = {V, D};
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    want[p + "input_layernorm.weight"] = {D};
    want[p + "post_attention_layernorm.weight"] = {D};
    want[p + "self_attn.q_proj.weight"] = {D, D};
    want[p + "self_attn.k_proj.weight"] = {KV, D};
    want[p + "self_attn.v_proj.weight"] = {KV, D};
    want[p + "self_attn.o_proj.weight"] = {D, D};
    want[p + "mlp.gate_proj.weight"] = {H, D};
    want[p + "mlp.up_proj.weight"] = {H, D};
    want[p + "mlp.down_proj.weight"] = {D, H};
  }
  ASSERT_EQ(lm.tensors.size(), want.size());
  for (const auto& [name, shape] : want) {
    ASSERT_TRUE(lm.tensors.count(name)) << name;
    const auto& t = lm.tensors.at(name);
    EXPECT_EQ(t.sizes().vec(), shape) << name;
    EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
    EXPECT_TRUE(t.is_contiguous()) << name;
  }
}

// ---- real data ----

TEST(Llama2cGguf, Stories260KBinAndGgufAgree) {
  SHARED_FILE_OR_SKIP(bin, "llama2c/stories260K.bin");
  SHARED_FILE_OR_SKIP(gg, "llama2c/stories260K.gguf");
  ImportedLm a = read_llama2c(bin), b = read_gguf(gg);
  nlohmann::json want = nlohmann::json::parse(R"({
      "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
      "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
      "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512,
      "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
      "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
      "torch_dtype": "float32"})");
  EXPECT_EQ(a.config, want) << a.config.dump();
  // The only difference: llama2.c's seq_len vs the converter's llama.context_length.
  want["max_position_embeddings"] = 2048;
  EXPECT_EQ(b.config, want) << b.config.dump();

  expect_hf_llama_tensors(a);
  ASSERT_EQ(a.tensors.size(), 2u + 9 * 5);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(b.tensors.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, b.tensors.at(name))) << name;
  }
  EXPECT_TRUE(a.vocab.empty());
  EXPECT_TRUE(a.scores.empty());
}

TEST(Llama2cGguf, GgufVocabEqualsTok512Bin) {
  SHARED_FILE_OR_SKIP(gg, "llama2c/stories260K.gguf");
  SHARED_FILE_OR_SKIP(tok, "llama2c/tok512.bin");
  ImportedLm lm = read_gguf(gg);
  ASSERT_EQ(lm.vocab.size(), 512u);
  ASSERT_EQ(lm.scores.size(), 512u);
  ASSERT_EQ(lm.token_types.size(), 512u);
  EXPECT_EQ(lm.token_types[0], 2);    // unknown
  EXPECT_EQ(lm.token_types[1], 3);    // control
  EXPECT_EQ(lm.token_types[3], 6);    // byte
  EXPECT_EQ(lm.token_types[300], 1);  // normal

  // tokenizer.bin: int32 max_token_length, then per token float32 score, int32 len, bytes.
  // llama2.c's tokenizer.py writes "▁" as " " and <s> / </s> as "\n<s>\n" / "\n</s>\n".
  const std::string t = pare_test::read_bytes(tok);
  size_t o = 4;
  for (size_t i = 0; i < 512; ++i) {
    float score;
    int32_t len;
    ASSERT_LE(o + 8, t.size());
    std::memcpy(&score, t.data() + o, 4);
    std::memcpy(&len, t.data() + o + 4, 4);
    o += 8;
    ASSERT_LE(o + len, t.size());
    const std::string piece = t.substr(o, len);
    o += len;
    std::string want = lm.vocab[i];
    for (size_t p; (p = want.find("\xe2\x96\x81")) != std::string::npos;) want.replace(p, 3, " ");
    if (i == 1 || i == 2) want = "\n" + want + "\n";
    EXPECT_EQ(piece, want) << "token " << i;
    EXPECT_EQ(score, lm.scores[i]) << "token " << i;
  }
  EXPECT_EQ(o, t.size());
  EXPECT_EQ(lm.vocab[1], "<s>");
  EXPECT_EQ(lm.vocab[259], "\xe2\x96\x81t");
}

TEST(Llama2cGguf, RopeReorderingKeepsAttentionScores) {
  SHARED_FILE_OR_SKIP(bin, "llama2c/stories260K.bin");
  ImportedLm lm = read_llama2c(bin);
  const std::string bytes = pare_test::read_bytes(bin);
  const int64_t D = 64, L = 5, V = 512, KV = 32, heads = 8, kv_heads = 4;
  torch::manual_seed(0);
  for (int64_t l = 0; l < L; ++l) {
    // Sections: embedding [V,D], rms_att [L,D], wq [L,D,D], wk [L,KV,D].
    const int64_t wq_at = V * D + L * D, wk_at = wq_at + L * D * D;
    auto wq = raw_floats(bytes, wq_at + l * D * D, {D, D});
    auto wk = raw_floats(bytes, wk_at + l * KV * D, {KV, D});
    const auto& hq = lm.tensors.at(llama_hf_layer_name(l, "self_attn.q_proj"));
    const auto& hk = lm.tensors.at(llama_hf_layer_name(l, "self_attn.k_proj"));
    EXPECT_TRUE(torch::equal(hq, to_hf_rows(wq, heads))) << "layer " << l;
    EXPECT_TRUE(torch::equal(hk, to_hf_rows(wk, kv_heads))) << "layer " << l;
    // Interleaved RoPE on the file's rows == HF rotate_half RoPE on the converted rows.
    EXPECT_LT(max_score_gap(wq, wk, hq, hk, heads, kv_heads), 1e-9) << "layer " << l;
    // ... and the check can tell: without the reordering the scores differ.
    EXPECT_GT(max_score_gap(wq, wk, wq, wk, heads, kv_heads), 1e-3) << "layer " << l;
  }
}

TEST(Llama2cGguf, AidreamsLoads) {
  SHARED_FILE_OR_SKIP(bin, "llama2c_aidreams260K/aidreams260K.bin");
  ImportedLm lm = read_llama2c(bin);
  EXPECT_EQ(lm.config["num_hidden_layers"], 4);
  EXPECT_EQ(lm.config["num_attention_heads"], 4);
  EXPECT_EQ(lm.config["num_key_value_heads"], 4);
  EXPECT_EQ(lm.config["hidden_size"], 64);
  EXPECT_EQ(lm.config["intermediate_size"], 172);
  EXPECT_EQ(lm.config["vocab_size"], 512);
  EXPECT_EQ(lm.config["max_position_embeddings"], 128);
  EXPECT_EQ(lm.config["tie_word_embeddings"], true);
  expect_hf_llama_tensors(lm);
  EXPECT_EQ(lm.tensors.size(), 2u + 9 * 4);
}

TEST(Llama2cGguf, GgufMetadataForInspect) {
  SHARED_FILE_OR_SKIP(gg, "llama2c/stories260K.gguf");
  nlohmann::json m = read_gguf_metadata(gg);
  EXPECT_EQ(m["GGUF.version"], 3);
  EXPECT_EQ(m["GGUF.tensor_count"], 48);
  EXPECT_EQ(m["GGUF.kv_count"], 19);
  EXPECT_EQ(m["general.architecture"], "llama");
  EXPECT_EQ(m["llama.block_count"], 5);
  EXPECT_EQ(m["llama.attention.layer_norm_rms_epsilon"], 1e-5);
  EXPECT_EQ(m["tokenizer.ggml.tokens"]["array"], "STRING");
  EXPECT_EQ(m["tokenizer.ggml.tokens"]["count"], 512);
  ASSERT_EQ(m["tokenizer.ggml.tokens"]["first"].size(), 16u);
  EXPECT_EQ(m["tokenizer.ggml.tokens"]["first"][2], "</s>");
  EXPECT_EQ(m["tokenizer.ggml.scores"]["array"], "FLOAT32");
}

// ---- hand-made llama2.c files ----

struct TinyBin {
  int32_t header[7];
  std::map<std::string, torch::Tensor> s;  // llama2.c section name -> [L, ...] or whole
  std::string bytes() const {
    std::string b;
    for (int32_t h : header) b += pod(h);
    for (const char* n : {"tok", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3",
                          "rms_final", "freq_real", "freq_imag", "wcls"})
      if (s.count(n)) b += tensor_bytes(s.at(n));
    return b;
  }
};

// dim 8, hidden 12, 2 layers, 2 heads, 1 kv head, vocab 10 (untied), seq_len 4.
TinyBin tiny_bin() {
  const int64_t D = 8, H = 12, L = 2, KV = 4, V = 10, S = 4;
  TinyBin t{{8, 12, 2, 2, 1, -10, 4}, {}};
  t.s = {{"tok", rnd({V, D})},       {"rms_att", rnd({L, D})}, {"wq", rnd({L, D, D})},
         {"wk", rnd({L, KV, D})},    {"wv", rnd({L, KV, D})},  {"wo", rnd({L, D, D})},
         {"rms_ffn", rnd({L, D})},   {"w1", rnd({L, H, D})},   {"w2", rnd({L, D, H})},
         {"w3", rnd({L, H, D})},     {"rms_final", rnd({D})},  {"freq_real", rnd({S, 2})},
         {"freq_imag", rnd({S, 2})}, {"wcls", rnd({V, D})}};
  return t;
}

TEST(Llama2cGguf, Llama2cUntiedHandMade) {
  TempDir dir;
  torch::manual_seed(1);
  TinyBin t = tiny_bin();
  pare_test::write_bytes(dir.file("m.bin"), t.bytes());
  ImportedLm lm = read_llama2c(dir.file("m.bin"));
  EXPECT_EQ(lm.config["tie_word_embeddings"], false);
  EXPECT_EQ(lm.config["vocab_size"], 10);
  EXPECT_EQ(lm.config["num_key_value_heads"], 1);
  EXPECT_EQ(lm.config["max_position_embeddings"], 4);
  expect_hf_llama_tensors(lm);
  const auto& g = lm.tensors;
  EXPECT_TRUE(torch::equal(g.at("model.embed_tokens.weight"), t.s["tok"]));
  EXPECT_TRUE(torch::equal(g.at("lm_head.weight"), t.s["wcls"]));
  EXPECT_TRUE(torch::equal(g.at("model.norm.weight"), t.s["rms_final"]));
  for (int64_t l = 0; l < 2; ++l) {
    expect_layer(
        lm, l, {"rms_att", "rms_ffn", "wq", "wk", "wv", "wo", "w1", "w3", "w2"},
        [&](const std::string& n) { return t.s[n][l]; }, 2, 1);
    auto hf = [&](const char* n) { return g.at(llama_hf_layer_name(l, n)); };
    EXPECT_LT(max_score_gap(t.s["wq"][l], t.s["wk"][l], hf("self_attn.q_proj"),
                            hf("self_attn.k_proj"), 2, 1),
              1e-9);
  }
}

TEST(Llama2cGguf, Llama2cTruncatedNamesTheShortSection) {
  SHARED_FILE_OR_SKIP(bin, "llama2c/stories260K.bin");
  TempDir dir;
  const std::string bytes = pare_test::read_bytes(bin);
  const std::string cut = dir.file("cut.bin");
  // 28 + 4*(512*64 + 5*64) = 132380: the first wq byte; cut inside wq.
  pare_test::write_bytes(cut, bytes.substr(0, 140000));
  EXPECT_INPUT_ERROR(read_llama2c(cut), AllOf(HasSubstr(cut), HasSubstr("truncated"),
                                              HasSubstr("section wq [5, 64, 64]"),
                                              HasSubstr("1056540"), HasSubstr("140000")));
  pare_test::write_bytes(cut, bytes.substr(0, bytes.size() - 1));
  EXPECT_INPUT_ERROR(read_llama2c(cut), AllOf(HasSubstr(cut), HasSubstr("freq_cis_imag")));
  pare_test::write_bytes(cut, bytes + "xyz");
  EXPECT_INPUT_ERROR(read_llama2c(cut),
                     AllOf(HasSubstr(cut), HasSubstr("1056543 bytes"), HasSubstr("implies 1056540"),
                           HasSubstr("3 trailing")));
  pare_test::write_bytes(cut, bytes.substr(0, 20));
  EXPECT_INPUT_ERROR(read_llama2c(cut),
                     AllOf(HasSubstr(cut), HasSubstr("28-byte llama2.c header")));
  EXPECT_INPUT_ERROR(read_llama2c(dir.file("missing.bin")),
                     AllOf(HasSubstr("missing.bin"), HasSubstr("cannot open")));
}

TEST(Llama2cGguf, Llama2cBadHeader) {
  TempDir dir;
  const std::string p = dir.file("bad.bin");
  torch::manual_seed(2);
  auto with_header = [&](std::vector<int32_t> h) {
    TinyBin t = tiny_bin();
    std::copy(h.begin(), h.end(), t.header);
    pare_test::write_bytes(p, t.bytes());
  };
  with_header({8, 12, 2, 3, 1, -10, 4});
  EXPECT_INPUT_ERROR(read_llama2c(p),
                     AllOf(HasSubstr(p), HasSubstr("n_heads 3 does not divide dim 8")));
  with_header({8, 12, 2, 2, 3, -10, 4});
  EXPECT_INPUT_ERROR(read_llama2c(p),
                     AllOf(HasSubstr(p), HasSubstr("n_kv_heads 3 does not divide n_heads 2")));
  with_header({8, 12, 0, 2, 1, -10, 4});
  EXPECT_INPUT_ERROR(read_llama2c(p),
                     AllOf(HasSubstr(p), HasSubstr("n_layers (int32 at byte offset 8) is 0")));
  with_header({-8, 12, 2, 2, 1, -10, 4});
  EXPECT_INPUT_ERROR(read_llama2c(p),
                     AllOf(HasSubstr(p), HasSubstr("dim (int32 at byte offset 0) is -8")));
  with_header({8, 12, 2, 8, 1, -10, 4});  // head size 1
  EXPECT_INPUT_ERROR(read_llama2c(p), AllOf(HasSubstr(p), HasSubstr("is odd")));
  with_header({0x616b3432, 1, 0, 0, 0, 0, 0});
  EXPECT_INPUT_ERROR(read_llama2c(p),
                     AllOf(HasSubstr(p), HasSubstr("ak42"), HasSubstr("version 0")));
  // A tied header on an untied file: 80 trailing bytes (wcls).
  with_header({8, 12, 2, 2, 1, 10, 4});
  EXPECT_INPUT_ERROR(read_llama2c(p), AllOf(HasSubstr(p), HasSubstr("320 trailing bytes")));
}

// ---- hand-made GGUF files ----

// Writes GGUF bytes; kvs and tensors may be edited before bytes().
struct GgufWriter {
  struct Tensor {
    std::string name;
    torch::Tensor value;  // written as F32, or F16 when type == 1; other types write F32 bytes
    uint32_t type = 0;
    int64_t offset = -1;  // -1: the next aligned offset
  };
  char magic[5] = "GGUF";
  uint32_t version = 3;
  std::vector<std::pair<std::string, std::string>> kvs;  // key, type + encoded value
  std::vector<Tensor> tensors;

  static std::string str(const std::string& s) { return pod<uint64_t>(s.size()) + s; }
  void set(const std::string& key, uint32_t type, const std::string& value) {
    for (auto& kv : kvs)
      if (kv.first == key) return void(kv.second = pod(type) + value);
    kvs.emplace_back(key, pod(type) + value);
  }
  void erase(const std::string& key) {
    kvs.erase(std::remove_if(kvs.begin(), kvs.end(), [&](auto& kv) { return kv.first == key; }),
              kvs.end());
  }
  Tensor& tensor(const std::string& name) {
    for (auto& t : tensors)
      if (t.name == name) return t;
    throw std::runtime_error("test: no tensor " + name);
  }
  std::string bytes() const {
    std::string b = std::string(magic, 4) + pod(version) + pod<uint64_t>(tensors.size()) +
                    pod<uint64_t>(kvs.size());
    for (const auto& [k, v] : kvs) b += str(k) + v;
    std::string data;
    for (const auto& t : tensors) {
      while (data.size() % 32) data.push_back('\0');
      b += str(t.name) + pod<uint32_t>(t.value.dim());
      for (int64_t d = t.value.dim() - 1; d >= 0; --d) b += pod<uint64_t>(t.value.size(d));
      b += pod(t.type) + pod<uint64_t>(t.offset >= 0 ? t.offset : data.size());
      data += tensor_bytes(t.type == 1 ? t.value.to(torch::kFloat16) : t.value);
    }
    while (b.size() % 32) b.push_back('\0');
    return b + data;
  }
};

std::string u32(uint32_t v) { return pod(v); }

// dim 8, ffn 12, 1 block, 2 heads, 1 kv head, vocab 6, context 16, untied, eps 1e-6, theta 5e5.
GgufWriter tiny_gguf() {
  GgufWriter w;
  w.set("general.architecture", 8, GgufWriter::str("llama"));
  w.set("llama.embedding_length", 4, u32(8));
  w.set("llama.feed_forward_length", 4, u32(12));
  w.set("llama.block_count", 4, u32(1));
  w.set("llama.attention.head_count", 4, u32(2));
  w.set("llama.attention.head_count_kv", 4, u32(1));
  w.set("llama.context_length", 4, u32(16));
  w.set("llama.attention.layer_norm_rms_epsilon", 6, pod(1e-6f));
  w.set("llama.rope.freq_base", 6, pod(5e5f));
  w.set("tokenizer.ggml.bos_token_id", 4, u32(1));
  w.set("tokenizer.ggml.eos_token_id", 4, u32(2));
  std::string toks = u32(8) + pod<uint64_t>(6), scores = u32(6) + pod<uint64_t>(6),
              types = u32(5) + pod<uint64_t>(6);
  for (int i = 0; i < 6; ++i) {
    toks += GgufWriter::str("t" + std::to_string(i));
    scores += pod(-0.5f * i);
    types += pod<int32_t>(i < 3 ? 3 : 1);
  }
  w.set("tokenizer.ggml.tokens", 9, toks);
  w.set("tokenizer.ggml.scores", 9, scores);
  w.set("tokenizer.ggml.token_type", 9, types);
  w.tensors = {{"token_embd.weight", rnd({6, 8})},    {"output_norm.weight", rnd({8})},
               {"output.weight", rnd({6, 8})},        {"blk.0.attn_norm.weight", rnd({8})},
               {"blk.0.attn_q.weight", rnd({8, 8})},  {"blk.0.attn_k.weight", rnd({4, 8})},
               {"blk.0.attn_v.weight", rnd({4, 8})},  {"blk.0.attn_output.weight", rnd({8, 8})},
               {"blk.0.ffn_norm.weight", rnd({8})},   {"blk.0.ffn_gate.weight", rnd({12, 8})},
               {"blk.0.ffn_up.weight", rnd({12, 8})}, {"blk.0.ffn_down.weight", rnd({8, 12})}};
  return w;
}

TEST(Llama2cGguf, GgufHandMadeF32F16Untied) {
  TempDir dir;
  torch::manual_seed(3);
  for (uint32_t version : {2u, 3u}) {
    GgufWriter w = tiny_gguf();
    w.version = version;
    w.tensor("blk.0.ffn_up.weight").type = 1;
    const std::string p = dir.file("t.gguf");
    pare_test::write_bytes(p, w.bytes());
    ImportedLm lm = read_gguf(p);
    EXPECT_EQ(lm.config, nlohmann::json::parse(R"({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
        "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 6,
        "max_position_embeddings": 16, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
        "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "float32"})"))
        << lm.config.dump();
    expect_hf_llama_tensors(lm);
    auto src = [&](const std::string& n) { return w.tensor(n).value; };
    const auto& g = lm.tensors;
    EXPECT_TRUE(torch::equal(g.at("model.embed_tokens.weight"), src("token_embd.weight")));
    EXPECT_TRUE(torch::equal(g.at("lm_head.weight"), src("output.weight")));
    EXPECT_TRUE(torch::equal(g.at("model.norm.weight"), src("output_norm.weight")));
    // ffn_up went through F16.
    expect_layer(
        lm, 0,
        {"attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
         "ffn_down"},
        [&](const std::string& n) {
          torch::Tensor v = src("blk.0." + n + ".weight");
          return n == "ffn_up" ? v.to(torch::kFloat16).to(torch::kFloat32) : v;
        },
        2, 1);
    EXPECT_EQ(lm.vocab, (std::vector<std::string>{"t0", "t1", "t2", "t3", "t4", "t5"}));
    EXPECT_EQ(lm.scores, (std::vector<float>{0, -0.5f, -1, -1.5f, -2, -2.5f}));
    EXPECT_EQ(lm.token_types, (std::vector<int32_t>{3, 3, 3, 1, 1, 1}));
  }
}

TEST(Llama2cGguf, GgufOutputEqualToEmbeddingIsTied) {
  TempDir dir;
  torch::manual_seed(4);
  GgufWriter w = tiny_gguf();
  w.tensor("output.weight").value = w.tensor("token_embd.weight").value.clone();
  pare_test::write_bytes(dir.file("t.gguf"), w.bytes());
  ImportedLm lm = read_gguf(dir.file("t.gguf"));
  EXPECT_EQ(lm.config["tie_word_embeddings"], true);
  EXPECT_EQ(lm.tensors.count("lm_head.weight"), 0u);
  // Absent output.weight: tied too.
  w.tensors.erase(w.tensors.begin() + 2);
  pare_test::write_bytes(dir.file("t.gguf"), w.bytes());
  lm = read_gguf(dir.file("t.gguf"));
  EXPECT_EQ(lm.config["tie_word_embeddings"], true);
  expect_hf_llama_tensors(lm);
}

TEST(Llama2cGguf, GgufBadMagic) {
  TempDir dir;
  GgufWriter w = tiny_gguf();
  std::memcpy(w.magic, "GGUX", 4);
  const std::string p = dir.file("magic.gguf");
  pare_test::write_bytes(p, w.bytes());
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("bad magic 'GGUX'"),
                                         HasSubstr("expected 'GGUF'")));
  EXPECT_INPUT_ERROR(read_gguf_metadata(p), AllOf(HasSubstr(p), HasSubstr("bad magic")));
  pare_test::write_bytes(p, "GG");
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("bad magic 'GG'")));
  w = tiny_gguf();
  w.version = 1;
  pare_test::write_bytes(p, w.bytes());
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("GGUF version 1 at byte offset 4"),
                                         HasSubstr("expected 2 or 3")));
}

TEST(Llama2cGguf, GgufTruncated) {
  SHARED_FILE_OR_SKIP(gg, "llama2c/stories260K.gguf");
  TempDir dir;
  const std::string bytes = pare_test::read_bytes(gg), p = dir.file("cut.gguf");
  pare_test::write_bytes(p, bytes.substr(0, 6000));  // inside tokenizer.ggml.tokens
  EXPECT_INPUT_ERROR(read_gguf(p),
                     AllOf(HasSubstr(p), HasSubstr("truncated at byte offset 5996: metadata "
                                                   "'tokenizer.ggml.tokens'[462]")));
  pare_test::write_bytes(p, bytes.substr(0, 3000));  // too short for its 512 tokens
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("tokenizer.ggml.tokens"),
                                         HasSubstr("array of 512 STRING at byte offset 57"),
                                         HasSubstr("cannot fit")));
  pare_test::write_bytes(p, bytes.substr(0, 1000));  // too short for the 48 tensor infos
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("tensor_count 48 (byte offset 8)"),
                                         HasSubstr("truncated")));
  pare_test::write_bytes(p, bytes.substr(0, 14000));  // inside the tensor infos
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("truncated at byte offset"),
                                         HasSubstr("tensor")));
  pare_test::write_bytes(p, bytes.substr(0, bytes.size() - 4));  // inside the last tensor
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("blk.4.ffn_norm.weight"),
                                         HasSubstr("past the end of the 1185372-byte file")));
}

TEST(Llama2cGguf, GgufEveryPrefixIsRefused) {
  TempDir dir;
  torch::manual_seed(5);
  const std::string bytes = tiny_gguf().bytes(), p = dir.file("cut.gguf");
  ASSERT_NO_THROW(read_gguf((pare_test::write_bytes(p, bytes), p)));
  for (size_t n = 0; n < bytes.size(); n += (n < 64 ? 1 : 13)) {
    pare_test::write_bytes(p, bytes.substr(0, n));
    EXPECT_INPUT_ERROR(read_gguf(p), HasSubstr(p)) << "prefix of " << n << " bytes";
  }
}

TEST(Llama2cGguf, GgufQuantizedTensorRefused) {
  TempDir dir;
  GgufWriter w = tiny_gguf();
  w.tensor("blk.0.ffn_up.weight").type = 2;
  const std::string p = dir.file("q.gguf");
  pare_test::write_bytes(p, w.bytes());
  EXPECT_INPUT_ERROR(read_gguf(p),
                     HasSubstr(p + ": tensor 'blk.0.ffn_up.weight': GGUF type Q4_0 (2) is not "
                                   "supported (only F32 and F16)"));
  w.tensor("blk.0.ffn_up.weight").type = 12;
  pare_test::write_bytes(p, w.bytes());
  EXPECT_INPUT_ERROR(read_gguf(p), HasSubstr("GGUF type Q4_K (12) is not supported"));
}

TEST(Llama2cGguf, GgufOffsetPastTheEnd) {
  TempDir dir;
  GgufWriter w = tiny_gguf();
  w.tensor("output_norm.weight").offset = 1 << 20;
  const std::string p = dir.file("off.gguf");
  pare_test::write_bytes(p, w.bytes());
  EXPECT_INPUT_ERROR(read_gguf(p),
                     AllOf(HasSubstr(p), HasSubstr("tensor 'output_norm.weight'"),
                           HasSubstr("data offset 1048576"), HasSubstr("past the end")));
  w.tensor("output_norm.weight").offset = 40;
  pare_test::write_bytes(p, w.bytes());
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("data offset 40"),
                                         HasSubstr("not a multiple of general.alignment 32")));
  w.tensor("output_norm.weight").offset = 0;  // on top of token_embd.weight
  pare_test::write_bytes(p, w.bytes());
  EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), HasSubstr("overlaps")));
}

TEST(Llama2cGguf, GgufMetadataAndTensorMismatches) {
  TempDir dir;
  const std::string p = dir.file("m.gguf");
  auto check = [&](const GgufWriter& w, auto matcher) {
    pare_test::write_bytes(p, w.bytes());
    EXPECT_INPUT_ERROR(read_gguf(p), AllOf(HasSubstr(p), matcher));
  };
  GgufWriter w = tiny_gguf();
  w.set("general.architecture", 8, GgufWriter::str("gpt2"));
  check(w, HasSubstr("general.architecture is 'gpt2', expected 'llama'"));
  w = tiny_gguf();
  w.erase("llama.block_count");
  check(w, HasSubstr("metadata key 'llama.block_count' is missing"));
  w = tiny_gguf();
  w.set("llama.embedding_length", 8, GgufWriter::str("8"));
  check(w, HasSubstr("metadata 'llama.embedding_length' at byte offset"));
  w = tiny_gguf();
  w.tensors.erase(w.tensors.begin() + 4);
  w.tensors.push_back({"blk.0.attn_qq.weight", rnd({8, 8})});
  check(w, HasSubstr("1 tensor(s) missing for a llama model with 1 blocks (llama.block_count): "
                     "blk.0.attn_q.weight"));
  w.tensors.push_back({"blk.0.attn_q.weight", rnd({8, 8})});
  check(w, HasSubstr("1 unexpected tensor(s) for a llama model with 1 blocks "
                     "(llama.block_count): blk.0.attn_qq.weight"));
  w = tiny_gguf();
  w.tensor("blk.0.attn_k.weight").value = rnd({8, 8});
  check(w, HasSubstr("tensor 'blk.0.attn_k.weight': shape [8, 8] (GGUF ne [8, 8]) but the metadata "
                     "(llama.attention.head_count_kv × head size, llama.embedding_length) gives "
                     "[4, 8]"));
  w = tiny_gguf();
  w.set("llama.attention.head_count", 4, u32(3));
  check(w, HasSubstr("llama.attention.head_count 3 does not divide llama.embedding_length 8"));
  w = tiny_gguf();
  w.set("tokenizer.ggml.bos_token_id", 4, u32(6));
  check(w, HasSubstr("'tokenizer.ggml.bos_token_id' at byte offset"));
}

}  // namespace
}  // namespace pare

// The model's documented opening (PROVENANCE.md; Karpathy's llama2.c README): greedy decoding
// from BOS with tok512, through pare's llama forward, from both file formats.
#include "tasks/lm_eval.h"
#include "data/tokenizer.h"
#include "families/checkpoint.h"

TEST(Stories260K, GreedyFromBosGivesTheDocumentedOpening) {
  const char* env = std::getenv("PARE_SHARED_DATA");
  const std::string dir = std::string(env && *env ? env : "../shared/data") + "/llama2c";
  if (!std::filesystem::exists(dir + "/stories260K.bin")) GTEST_SKIP() << "no " << dir;
  auto tok = pare::load_llama2c_tokenizer(dir + "/tok512.bin");
  const std::string want =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
  for (const char* file : {"stories260K.bin", "stories260K.gguf"}) {
    pare::Model m = pare::load_model(dir + "/" + file);
    std::vector<int64_t> ids = pare::greedy_generate(m, {tok->bos_id()}, 40);
    const std::string text = tok->decode(ids);
    EXPECT_EQ(text.substr(0, want.size()), want) << file << ": " << text;
  }
}
