#include "io/llama2c.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/error.h"

namespace pare {

// ---- shared helpers ----

nlohmann::json llama_hf_config(const LlamaDims& d) {
  nlohmann::json c = nlohmann::json::object();
  c["model_type"] = "llama";
  c["architectures"] = nlohmann::json::array({"LlamaForCausalLM"});
  c["hidden_size"] = d.hidden;
  c["intermediate_size"] = d.intermediate;
  c["num_hidden_layers"] = d.layers;
  c["num_attention_heads"] = d.heads;
  c["num_key_value_heads"] = d.kv_heads;
  c["vocab_size"] = d.vocab;
  c["max_position_embeddings"] = d.max_positions;
  c["rms_norm_eps"] = d.rms_norm_eps;
  c["rope_theta"] = d.rope_theta;
  c["tie_word_embeddings"] = d.tied;
  c["bos_token_id"] = d.bos;
  c["eos_token_id"] = d.eos;
  c["hidden_act"] = "silu";
  c["torch_dtype"] = "float32";
  return c;
}

std::string llama_hf_layer_name(int64_t layer, const std::string& suffix) {
  return concat("model.layers.", layer, ".", suffix, ".weight");
}

torch::Tensor interleaved_to_hf_rope_rows(const torch::Tensor& w, int64_t n_heads) {
  PARE_ASSERT(w.dim() == 2 && n_heads > 0 && w.size(0) % (2 * n_heads) == 0, "rows ", w.size(0),
              " heads ", n_heads);
  const int64_t rows = w.size(0), cols = w.size(1), head_dim = rows / n_heads;
  // [head, pair i, j, in] -> [head, j, pair i, in]: HF row j*(head_dim/2)+i = interleaved 2i+j.
  return w.reshape({n_heads, head_dim / 2, 2, cols})
      .transpose(1, 2)
      .reshape({rows, cols})
      .contiguous();
}

namespace detail {

MappedFile::MappedFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  PARE_CHECK(fd >= 0, path, ": cannot open file: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(concat(path, ": not a regular file"));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    PARE_CHECK(p != MAP_FAILED, path, ": cannot memory-map ", size_, " bytes: ", std::strerror(e));
    data_ = static_cast<const char*>(p);
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<char*>(data_), size_);
}

torch::Tensor tensor_from_bytes(const char* src, const std::vector<int64_t>& shape,
                                torch::ScalarType dtype) {
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  if (t.numel() > 0) std::memcpy(t.data_ptr(), src, t.numel() * t.element_size());
  return t;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace detail

// ---- llama2.c ----

namespace {

struct Section {
  const char* name;
  std::vector<int64_t> shape;  // the first entry is n_layers for per-layer sections
  bool per_layer;
  uint64_t begin = 0, end = 0;  // byte range in the file
};

}  // namespace

ImportedLm read_llama2c(const std::string& path) {
  detail::MappedFile file(path);
  const uint64_t size = file.size();
  PARE_CHECK(size >= 28, path, ": ", size,
             " bytes, too short for the 28-byte llama2.c header (7 int32: dim, hidden_dim, "
             "n_layers, n_heads, n_kv_heads, vocab_size, seq_len)");
  int32_t h[7];
  std::memcpy(h, file.data(), sizeof h);
  PARE_CHECK(static_cast<uint32_t>(h[0]) != 0x616b3432u, path,
             ": llama2.c version 1/2 export (magic 'ak42' at byte offset 0) is not supported; "
             "expected the legacy version 0 format (export.py --version 0)");
  static const char* const kField[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                        "n_kv_heads", "vocab_size", "seq_len"};
  static const int64_t kLimit[7] = {int64_t(1) << 16, int64_t(1) << 20, 1024,
                                    int64_t(1) << 12, int64_t(1) << 12, int64_t(1) << 22,
                                    int64_t(1) << 24};
  int64_t v[7];
  for (int i = 0; i < 7; ++i) {
    v[i] = i == 5 ? std::llabs(static_cast<long long>(h[i])) : h[i];
    PARE_CHECK(v[i] > 0 && v[i] <= kLimit[i], path, ": header field ", kField[i],
               " (int32 at byte offset ", 4 * i, ") is ", h[i], ", expected ", i == 5 ? "±" : "",
               "1..", kLimit[i], " (not a llama2.c legacy checkpoint?)");
  }
  const int64_t D = v[0], H = v[1], L = v[2], heads = v[3], kv_heads = v[4], V = v[5], S = v[6];
  const bool tied = h[5] > 0;
  PARE_CHECK(D % heads == 0, path, ": header: n_heads ", heads, " does not divide dim ", D);
  const int64_t head_size = D / heads;
  PARE_CHECK(head_size % 2 == 0, path, ": header: head size dim/n_heads = ", head_size,
             " is odd, expected an even size for RoPE");
  PARE_CHECK(kv_heads <= heads && heads % kv_heads == 0, path, ": header: n_kv_heads ", kv_heads,
             " does not divide n_heads ", heads);
  const int64_t KV = kv_heads * head_size;
  const std::string header =
      concat("dim ", D, ", hidden_dim ", H, ", n_layers ", L, ", n_heads ", heads, ", n_kv_heads ",
             kv_heads, ", vocab_size ", h[5], ", seq_len ", S, tied ? ", tied" : ", untied");

  std::vector<Section> sections = {{"token_embedding_table", {V, D}, false},
                                   {"rms_att_weight", {L, D}, true},
                                   {"wq", {L, D, D}, true},
                                   {"wk", {L, KV, D}, true},
                                   {"wv", {L, KV, D}, true},
                                   {"wo", {L, D, D}, true},
                                   {"rms_ffn_weight", {L, D}, true},
                                   {"w1", {L, H, D}, true},
                                   {"w2", {L, D, H}, true},
                                   {"w3", {L, H, D}, true},
                                   {"rms_final_weight", {D}, false},
                                   {"freq_cis_real", {S, head_size / 2}, false},
                                   {"freq_cis_imag", {S, head_size / 2}, false}};
  if (!tied) sections.push_back({"wcls", {V, D}, false});
  uint64_t offset = 28;
  for (auto& s : sections) {
    uint64_t n = 4;
    for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
    s.begin = offset;
    s.end = offset += n;
  }
  const uint64_t expected = offset;
  if (size < expected) {
    for (const auto& s : sections)
      PARE_CHECK(s.end <= size, path, ": truncated: section ", s.name, " ",
                 detail::shape_str(s.shape), " float32 occupies bytes [", s.begin, ", ", s.end,
                 ") but the file has ", size, " bytes; the header (", header, ") needs ", expected,
                 " bytes");
  }
  PARE_CHECK(size == expected, path, ": ", size, " bytes, but the llama2.c header (", header,
             ") implies ", expected, " bytes: ", size - expected,
             " trailing bytes (a different format, or a wrong header)");

  auto section = [&](const char* name) -> const Section& {
    for (const auto& s : sections)
      if (std::strcmp(s.name, name) == 0) return s;
    throw InternalError(concat("llama2c: no section ", name));
  };
  // Layer `layer` of a per-layer section (or the whole section when layer < 0).
  auto read = [&](const char* name, int64_t layer) {
    const Section& s = section(name);
    std::vector<int64_t> shape = s.shape;
    uint64_t begin = s.begin;
    if (s.per_layer) {
      shape.erase(shape.begin());
      begin += static_cast<uint64_t>(layer) * ((s.end - s.begin) / static_cast<uint64_t>(L));
    }
    return detail::tensor_from_bytes(file.data() + begin, shape, torch::kFloat32);
  };

  ImportedLm out;
  LlamaDims d;
  d.hidden = D;
  d.intermediate = H;
  d.layers = L;
  d.heads = heads;
  d.kv_heads = kv_heads;
  d.vocab = V;
  d.max_positions = S;
  d.tied = tied;
  out.config = llama_hf_config(d);
  auto& t = out.tensors;
  t["model.embed_tokens.weight"] = read("token_embedding_table", -1);
  for (int64_t l = 0; l < L; ++l) {
    t[llama_hf_layer_name(l, "input_layernorm")] = read("rms_att_weight", l);
    t[llama_hf_layer_name(l, "self_attn.q_proj")] =
        interleaved_to_hf_rope_rows(read("wq", l), heads);
    t[llama_hf_layer_name(l, "self_attn.k_proj")] =
        interleaved_to_hf_rope_rows(read("wk", l), kv_heads);
    t[llama_hf_layer_name(l, "self_attn.v_proj")] = read("wv", l);
    t[llama_hf_layer_name(l, "self_attn.o_proj")] = read("wo", l);
    t[llama_hf_layer_name(l, "post_attention_layernorm")] = read("rms_ffn_weight", l);
    t[llama_hf_layer_name(l, "mlp.gate_proj")] = read("w1", l);
    t[llama_hf_layer_name(l, "mlp.down_proj")] = read("w2", l);
    t[llama_hf_layer_name(l, "mlp.up_proj")] = read("w3", l);
  }
  t["model.norm.weight"] = read("rms_final_weight", -1);
  if (!tied) t["lm_head.weight"] = read("wcls", -1);
  return out;
}

}  // namespace pare
