#include "io/gguf.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "base/error.h"

namespace pare {
namespace {

// Metadata value types.
enum : uint32_t {
  kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64
};
const char* const kValueTypeNames[] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                       "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                       "UINT64", "INT64",   "FLOAT64"};

std::string value_type_name(uint32_t t) {
  return t <= kF64 ? kValueTypeNames[t] : concat("type ", t);
}

bool is_integer_type(uint32_t t) { return t <= kI32 || t == kU64 || t == kI64; }

// ggml tensor types (ggml.h enum ggml_type); the removed ones (4, 5) keep their slots.
std::string ggml_type_name(uint32_t t) {
  static const char* const names[] = {
      "F32",      "F16",      "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
      "Q8_0",     "Q8_1",     "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS",  "IQ2_XS",   "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",       "I16",      "I32",     "I64",   "F64",    "IQ1_M", "BF16",  "Q4_0_4_4",
      "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",   "TQ2_0"};
  return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

// The shortest decimal that reads back as `f` (so 1e-5 stored as float32 reads 1e-05).
double shortest_double(float f) {
  if (!std::isfinite(f)) return f;
  char buf[32];
  for (int p = 1; p <= 9; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
  }
  return f;
}


// Bounds-checked little-endian reads from the mapped file.
class Reader {
 public:
  Reader(const std::string& path, const char* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, const std::string& what) const {
    PARE_CHECK(n <= left(), path_, ": truncated at byte offset ", pos_, ": ", what, " needs ", n,
               " bytes but only ", left(), " remain in the ", size_, "-byte file");
  }
  template <class T>
  T get(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t n = get<uint64_t>(what + " (length)");
    need(n, what);
    std::string s(data_ + pos_, n);
    pos_ += n;
    return s;
  }

 private:
  const std::string& path_;
  const char* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

struct Kv {
  uint32_t type = 0;
  uint32_t elem = 0;    // element type of an ARRAY
  uint64_t offset = 0;  // byte offset of the key in the file
  nlohmann::json value;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;     // GGUF order: ne[0] fastest
  std::vector<int64_t> shape;  // torch order: reversed ne
  uint32_t type = 0;
  uint64_t offset = 0;  // in the data section
  uint64_t info_offset = 0;
  uint64_t nbytes = 0;
};

struct Parsed {
  uint32_t version = 0;
  uint64_t tensor_count = 0, kv_count = 0;
  std::map<std::string, Kv> kv;
  std::vector<TensorInfo> tensors;
  uint64_t alignment = 32, data_start = 0;
};

// Smallest encoded size of one value of type t (for sanity-checking array counts).
uint64_t min_value_bytes(uint32_t t) {
  switch (t) {
    case kU8:
    case kI8:
    case kBool: return 1;
    case kU16:
    case kI16: return 2;
    case kU32:
    case kI32:
    case kF32: return 4;
    case kArray: return 12;
    default: return 8;
  }
}

nlohmann::json read_value(Reader& r, const std::string& path, uint32_t type,
                          const std::string& what, int depth) {
  switch (type) {
    case kU8: return r.get<uint8_t>(what);
    case kI8: return r.get<int8_t>(what);
    case kU16: return r.get<uint16_t>(what);
    case kI16: return r.get<int16_t>(what);
    case kU32: return r.get<uint32_t>(what);
    case kI32: return r.get<int32_t>(what);
    case kU64: return r.get<uint64_t>(what);
    case kI64: return r.get<int64_t>(what);
    case kF32: return shortest_double(r.get<float>(what));
    case kF64: return r.get<double>(what);
    case kBool: return r.get<uint8_t>(what) != 0;
    case kString: return r.str(what);
    case kArray: {
      PARE_CHECK(depth < 4, path, ": ", what, " at byte offset ", r.pos(),
                 ": arrays nested more than 4 deep");
      const uint64_t at = r.pos();
      const uint32_t elem = r.get<uint32_t>(what + " (array element type)");
      PARE_CHECK(elem <= kF64, path, ": ", what, ": unknown array element type ", elem,
                 " at byte offset ", at, " (expected 0..12)");
      const uint64_t n = r.get<uint64_t>(what + " (array count)");
      PARE_CHECK(n <= r.left() / min_value_bytes(elem), path, ": ", what, ": array of ", n, " ",
                 value_type_name(elem), " at byte offset ", at, " cannot fit in the ", r.left(),
                 " bytes left (truncated or corrupt)");
      nlohmann::json a = nlohmann::json::array();
      for (uint64_t i = 0; i < n; ++i)
        a.push_back(read_value(r, path, elem, concat(what, "[", i, "]"), depth + 1));
      return a;
    }
    default:
      throw InputError(concat(path, ": ", what, ": unknown value type ", type,
                              " before byte offset ", r.pos(), " (expected 0..12)"));
  }
}

// Parses the header and metadata, and (when `with_tensors`) the tensor infos, validating every
// tensor's type, alignment and byte range.
Parsed parse(const std::string& path, const detail::MappedFile& file, bool with_tensors) {
  Reader r(path, file.data(), file.size());
  Parsed p;
  PARE_CHECK(file.size() >= 4 && std::memcmp(file.data(), "GGUF", 4) == 0, path, ": bad magic '",
             printable(std::string_view(file.data(), std::min<uint64_t>(4, file.size()))),
             "' at byte offset 0, expected 'GGUF' (not a GGUF file)");
  r.get<uint32_t>("magic");
  p.version = r.get<uint32_t>("version");
  const uint32_t swapped = __builtin_bswap32(p.version);
  PARE_CHECK(p.version == 2 || p.version == 3, path, ": GGUF version ", p.version,
             " at byte offset 4 is not supported (expected 2 or 3",
             swapped == 2 || swapped == 3 ? "; this looks like a big-endian file" : "", ")");
  p.tensor_count = r.get<uint64_t>("tensor_count");
  p.kv_count = r.get<uint64_t>("kv_count");
  PARE_CHECK(p.kv_count <= r.left() / 13, path, ": header: kv_count ", p.kv_count,
             " (byte offset 16) cannot fit in the ", file.size(),
             "-byte file (truncated or corrupt)");
  PARE_CHECK(p.tensor_count <= r.left() / 32, path, ": header: tensor_count ", p.tensor_count,
             " (byte offset 8) cannot fit in the ", file.size(),
             "-byte file (truncated or corrupt)");

  for (uint64_t i = 0; i < p.kv_count; ++i) {
    const uint64_t at = r.pos();
    std::string key = r.str(concat("metadata entry ", i, " key"));
    const uint32_t type = r.get<uint32_t>(concat("metadata '", key, "' value type"));
    PARE_CHECK(type <= kF64, path, ": metadata '", key, "' at byte offset ", at,
               ": unknown value type ", type, " (expected 0..12)");
    Kv kv;
    kv.type = type;
    kv.offset = at;
    if (type == kArray && r.left() >= 4) std::memcpy(&kv.elem, file.data() + r.pos(), 4);
    kv.value = read_value(r, path, type, concat("metadata '", key, "'"), 0);
    PARE_CHECK(p.kv.emplace(key, std::move(kv)).second, path, ": metadata key '", key,
               "' at byte offset ", at, " appears twice");
  }
  if (auto it = p.kv.find("general.alignment"); it != p.kv.end()) {
    const Kv& a = it->second;
    PARE_CHECK(a.type == kU32 && a.value.get<uint64_t>() > 0 &&
                   (a.value.get<uint64_t>() & (a.value.get<uint64_t>() - 1)) == 0,
               path, ": metadata 'general.alignment' at byte offset ", a.offset, " is ",
               value_type_name(a.type), " ", a.value.dump(), ", expected a UINT32 power of two");
    p.alignment = a.value.get<uint64_t>();
  }
  if (!with_tensors) return p;

  std::set<std::string> names;
  for (uint64_t i = 0; i < p.tensor_count; ++i) {
    TensorInfo t;
    t.info_offset = r.pos();
    t.name = r.str(concat("tensor info ", i, " name"));
    const std::string what = concat("tensor '", t.name, "'");
    PARE_CHECK(names.insert(t.name).second, path, ": ", what, " at byte offset ", t.info_offset,
               " appears twice");
    const uint32_t n_dims = r.get<uint32_t>(what + " n_dims");
    PARE_CHECK(n_dims >= 1 && n_dims <= 4, path, ": ", what, ": n_dims ", n_dims,
               " at byte offset ", r.pos() - 4, ", expected 1..4");
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = r.get<uint64_t>(concat(what, " ne[", d, "]"));
      PARE_CHECK(ne >= 1 && ne < (uint64_t(1) << 40), path, ": ", what, ": ne[", d, "] = ", ne,
                 " at byte offset ", r.pos() - 8, " is out of range");
      t.ne.push_back(static_cast<int64_t>(ne));
      numel *= static_cast<int64_t>(ne);
      PARE_CHECK(numel < (int64_t(1) << 42), path, ": ", what, ": too many elements");
    }
    t.shape.assign(t.ne.rbegin(), t.ne.rend());
    t.type = r.get<uint32_t>(what + " type");
    PARE_CHECK(t.type == 0 || t.type == 1, path, ": ", what, ": GGUF type ", ggml_type_name(t.type),
               " (", t.type, ") is not supported (only F32 and F16)");
    t.nbytes = static_cast<uint64_t>(numel) * (t.type == 0 ? 4 : 2);
    t.offset = r.get<uint64_t>(what + " offset");
    PARE_CHECK(t.offset % p.alignment == 0, path, ": ", what, ": data offset ", t.offset,
               " (tensor info at byte offset ", t.info_offset,
               ") is not a multiple of general.alignment ", p.alignment);
    p.tensors.push_back(std::move(t));
  }
  p.data_start = (r.pos() + p.alignment - 1) / p.alignment * p.alignment;
  const uint64_t size = file.size();
  for (const auto& t : p.tensors) {
    PARE_CHECK(p.data_start <= size && t.offset <= size - p.data_start &&
                   t.nbytes <= size - p.data_start - t.offset,
               path, ": tensor '", t.name, "': ", t.nbytes, " bytes at data offset ", t.offset,
               " (byte offset ", p.data_start + t.offset, " of the file, data section at ",
               p.data_start, ") run past the end of the ", size,
               "-byte file (truncated or a bad offset)");
  }
  std::vector<const TensorInfo*> order;
  for (const auto& t : p.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i)
    PARE_CHECK(order[i - 1]->offset + order[i - 1]->nbytes <= order[i]->offset, path, ": tensor '",
               order[i]->name, "' at data offset ", order[i]->offset, " overlaps tensor '",
               order[i - 1]->name, "' (data offsets [", order[i - 1]->offset, ", ",
               order[i - 1]->offset + order[i - 1]->nbytes, "))");
  return p;
}

// Typed access to the metadata, with errors naming the key.
class Meta {
 public:
  Meta(const std::string& path, const Parsed& p) : path_(path), p_(p) {}
  const Kv* find(const std::string& key) const {
    auto it = p_.kv.find(key);
    return it == p_.kv.end() ? nullptr : &it->second;
  }
  const Kv& require(const std::string& key) const {
    const Kv* kv = find(key);
    PARE_CHECK(kv, path_, ": metadata key '", key, "' is missing (required for a llama GGUF)");
    return *kv;
  }
  std::string type_error(const std::string& key, const Kv& kv, const char* expected) const {
    return concat(path_, ": metadata '", key, "' at byte offset ", kv.offset, " is ",
                  value_type_name(kv.type), kv.type == kArray ? " of " : "",
                  kv.type == kArray ? value_type_name(kv.elem) : "", ", expected ", expected);
  }
  // A positive integer (or `def` when absent and def > 0).
  int64_t count(const std::string& key, int64_t def = 0) const {
    const Kv* kv = def > 0 ? find(key) : &require(key);
    if (!kv) return def;
    PARE_CHECK(is_integer_type(kv->type), type_error(key, *kv, "an integer"));
    const bool ok = kv->value.is_number_unsigned()
                        ? kv->value.get<uint64_t>() >= 1 && kv->value.get<uint64_t>() < (1u << 31)
                        : kv->value.get<int64_t>() >= 1 && kv->value.get<int64_t>() < (1 << 30);
    PARE_CHECK(ok, path_, ": metadata '", key, "' at byte offset ", kv->offset, " is ",
               kv->value.dump(), ", expected a positive count");
    return kv->value.get<int64_t>();
  }
  // A token id in 0..vocab-1 (or `def` when absent).
  int64_t token_id(const std::string& key, int64_t def, int64_t vocab) const {
    const Kv* kv = find(key);
    if (!kv) return def;
    PARE_CHECK(is_integer_type(kv->type), type_error(key, *kv, "an integer"));
    const bool ok = kv->value.is_number_unsigned()
                        ? kv->value.get<uint64_t>() < static_cast<uint64_t>(vocab)
                        : kv->value.get<int64_t>() >= 0 && kv->value.get<int64_t>() < vocab;
    PARE_CHECK(ok, path_, ": metadata '", key, "' at byte offset ", kv->offset, " is ",
               kv->value.dump(), ", expected a token id in 0..", vocab - 1);
    return kv->value.get<int64_t>();
  }
  double number(const std::string& key, double def, bool required) const {
    const Kv* kv = required ? &require(key) : find(key);
    if (!kv) return def;
    PARE_CHECK(kv->type == kF32 || kv->type == kF64 || is_integer_type(kv->type),
               type_error(key, *kv, "a number"));
    return kv->value.get<double>();
  }
  std::string string(const std::string& key) const {
    const Kv& kv = require(key);
    PARE_CHECK(kv.type == kString, type_error(key, kv, "a STRING"));
    return kv.value.get<std::string>();
  }
  // An array whose elements satisfy `ok`, or null when absent.
  const nlohmann::json* array(const std::string& key, bool (*ok)(uint32_t),
                              const char* expected) const {
    const Kv* kv = find(key);
    if (!kv) return nullptr;
    PARE_CHECK(kv->type == kArray && ok(kv->elem), type_error(key, *kv, expected));
    return &kv->value;
  }

 private:
  const std::string& path_;
  const Parsed& p_;
};

// One tensor the llama mapping expects.
struct Want {
  std::string gguf, hf;
  std::vector<int64_t> shape;
  std::string from;        // the metadata that gives the shape, for errors
  int64_t rope_heads = 0;  // > 0: q/k rows to reorder
};

std::string name_list(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 8) s += concat(" and ", names.size() - 8, " more");
  return s;
}

}  // namespace

ImportedLm read_gguf(const std::string& path) {
  detail::MappedFile file(path);
  const Parsed p = parse(path, file, true);
  const Meta m(path, p);
  const std::string arch = m.string("general.architecture");
  PARE_CHECK(arch == "llama", path, ": general.architecture is '", arch,
             "', expected 'llama' (only Llama-architecture GGUF files can be imported)");

  LlamaDims d;
  d.hidden = m.count("llama.embedding_length");
  d.intermediate = m.count("llama.feed_forward_length");
  d.layers = m.count("llama.block_count");
  d.heads = m.count("llama.attention.head_count");
  d.kv_heads = m.count("llama.attention.head_count_kv", d.heads);
  d.max_positions = m.count("llama.context_length");
  d.rms_norm_eps = m.number("llama.attention.layer_norm_rms_epsilon", 0, true);
  d.rope_theta = m.number("llama.rope.freq_base", 10000.0, false);
  PARE_CHECK(d.hidden % d.heads == 0, path, ": llama.attention.head_count ", d.heads,
             " does not divide llama.embedding_length ", d.hidden);
  const int64_t head_dim = d.hidden / d.heads;
  PARE_CHECK(head_dim % 2 == 0, path,
             ": head size llama.embedding_length / head_count = ", head_dim,
             " is odd, expected an even size for RoPE");
  PARE_CHECK(d.kv_heads <= d.heads && d.heads % d.kv_heads == 0, path,
             ": llama.attention.head_count_kv ", d.kv_heads,
             " does not divide llama.attention.head_count ", d.heads);
  for (const char* key :
       {"llama.rope.dimension_count", "llama.attention.key_length", "llama.attention.value_length"})
    PARE_CHECK(m.count(key, head_dim) == head_dim, path, ": metadata '", key, "' is ",
               m.count(key, head_dim), ", expected the head size ", head_dim,
               " (embedding_length / head_count; partial RoPE and other head sizes are not "
               "supported)");
  PARE_CHECK(!m.find("llama.expert_count") || m.find("llama.expert_count")->value == 0, path,
             ": llama.expert_count is set: mixture-of-experts GGUF files are not supported");
  if (const Kv* s = m.find("llama.rope.scaling.type"))
    PARE_CHECK(s->value == "none", path, ": llama.rope.scaling.type is ", s->value.dump(),
               ", expected none (RoPE scaling is not supported)");

  ImportedLm out;
  auto is_string = [](uint32_t t) { return t == kString; };
  auto is_float = [](uint32_t t) { return t == kF32 || t == kF64; };
  if (const auto* tokens = m.array("tokenizer.ggml.tokens", is_string, "an ARRAY of STRING")) {
    for (const auto& t : *tokens) out.vocab.push_back(t.get<std::string>());
  }
  if (const auto* scores = m.array("tokenizer.ggml.scores", is_float, "an ARRAY of FLOAT32")) {
    for (const auto& s : *scores) out.scores.push_back(static_cast<float>(s.get<double>()));
    PARE_CHECK(out.scores.size() == out.vocab.size(), path, ": tokenizer.ggml.scores has ",
               out.scores.size(), " entries, expected one per token (", out.vocab.size(), ")");
  }
  if (const auto* types =
          m.array("tokenizer.ggml.token_type", is_integer_type, "an ARRAY of INT32")) {
    for (const auto& t : *types) out.token_types.push_back(t.get<int32_t>());
    PARE_CHECK(out.token_types.size() == out.vocab.size(), path, ": tokenizer.ggml.token_type has ",
               out.token_types.size(), " entries, expected one per token (", out.vocab.size(), ")");
  }
  std::string vocab_from;
  if (!out.vocab.empty()) {
    d.vocab = static_cast<int64_t>(out.vocab.size());
    vocab_from = "the number of tokenizer.ggml.tokens";
    PARE_CHECK(m.count("llama.vocab_size", d.vocab) == d.vocab, path, ": llama.vocab_size ",
               m.count("llama.vocab_size", d.vocab), " differs from the ", d.vocab,
               " tokenizer.ggml.tokens");
  } else if (m.find("llama.vocab_size")) {
    d.vocab = m.count("llama.vocab_size");
    vocab_from = "llama.vocab_size";
  } else {
    for (const auto& t : p.tensors)
      if (t.name == "token_embd.weight" && t.ne.size() == 2) d.vocab = t.ne[1];
    vocab_from = "token_embd.weight";
  }

  const int64_t D = d.hidden, H = d.intermediate, KV = d.kv_heads * head_dim, V = d.vocab;
  const std::string dk = "llama.embedding_length", hk = "llama.feed_forward_length",
                    kvk = "llama.attention.head_count_kv × head size";
  std::vector<Want> want = {
      {"token_embd.weight", "model.embed_tokens.weight", {V, D}, concat(vocab_from, ", ", dk)},
      {"output_norm.weight", "model.norm.weight", {D}, dk},
      {"output.weight", "lm_head.weight", {V, D}, vocab_from + ", " + dk}};
  for (int64_t l = 0; l < d.layers; ++l) {
    auto add = [&](const char* g, const char* hf, std::vector<int64_t> shape, std::string from,
                   int64_t rope_heads = 0) {
      want.push_back({concat("blk.", l, ".", g, ".weight"), llama_hf_layer_name(l, hf),
                      std::move(shape), std::move(from), rope_heads});
    };
    add("attn_norm", "input_layernorm", {D}, dk);
    add("attn_q", "self_attn.q_proj", {D, D}, dk + ", " + dk, d.heads);
    add("attn_k", "self_attn.k_proj", {KV, D}, kvk + ", " + dk, d.kv_heads);
    add("attn_v", "self_attn.v_proj", {KV, D}, kvk + ", " + dk);
    add("attn_output", "self_attn.o_proj", {D, D}, dk + ", " + dk);
    add("ffn_norm", "post_attention_layernorm", {D}, dk);
    add("ffn_gate", "mlp.gate_proj", {H, D}, hk + ", " + dk);
    add("ffn_up", "mlp.up_proj", {H, D}, hk + ", " + dk);
    add("ffn_down", "mlp.down_proj", {D, H}, dk + ", " + hk);
  }

  std::map<std::string, const TensorInfo*> infos;
  for (const auto& t : p.tensors) infos[t.name] = &t;
  std::vector<std::string> missing, unknown;
  std::set<std::string> known;
  for (const auto& w : want) {
    known.insert(w.gguf);
    if (!infos.count(w.gguf) && w.gguf != "output.weight") missing.push_back(w.gguf);
  }
  for (const auto& t : p.tensors)
    if (!known.count(t.name)) unknown.push_back(t.name);
  PARE_CHECK(missing.empty(), path, ": ", missing.size(),
             " tensor(s) missing for a llama model with ", d.layers,
             " blocks (llama.block_count): ", name_list(missing));
  PARE_CHECK(unknown.empty(), path, ": ", unknown.size(),
             " unexpected tensor(s) for a llama model with ", d.layers,
             " blocks (llama.block_count): ", name_list(unknown));

  for (const auto& w : want) {
    auto it = infos.find(w.gguf);
    if (it == infos.end()) continue;
    const TensorInfo& t = *it->second;
    PARE_CHECK(t.shape == w.shape, path, ": tensor '", t.name, "': shape ",
               detail::shape_str(t.shape), " (GGUF ne ", detail::shape_str(t.ne),
               ") but the metadata (", w.from, ") gives ", detail::shape_str(w.shape));
    const char* src = file.data() + p.data_start + t.offset;
    torch::Tensor x =
        t.type == 0 ? detail::tensor_from_bytes(src, t.shape, torch::kFloat32)
                    : detail::tensor_from_bytes(src, t.shape, torch::kFloat16).to(torch::kFloat32);
    if (w.rope_heads > 0) x = interleaved_to_hf_rope_rows(x, w.rope_heads);
    out.tensors[w.hf] = std::move(x);
  }
  auto head = out.tensors.find("lm_head.weight");
  d.tied = head == out.tensors.end() ||
           torch::equal(head->second, out.tensors.at("model.embed_tokens.weight"));
  if (d.tied && head != out.tensors.end()) out.tensors.erase(head);
  d.bos = m.token_id("tokenizer.ggml.bos_token_id", 1, d.vocab);
  d.eos = m.token_id("tokenizer.ggml.eos_token_id", 2, d.vocab);
  out.config = llama_hf_config(d);
  return out;
}

nlohmann::json read_gguf_metadata(const std::string& path) {
  detail::MappedFile file(path);
  const Parsed p = parse(path, file, false);
  nlohmann::json out = nlohmann::json::object();
  out["GGUF.version"] = p.version;
  out["GGUF.tensor_count"] = p.tensor_count;
  out["GGUF.kv_count"] = p.kv_count;
  for (const auto& [key, kv] : p.kv) {
    if (kv.type == kArray && kv.value.size() > 16) {
      nlohmann::json first = nlohmann::json::array();
      for (size_t i = 0; i < 16; ++i) first.push_back(kv.value[i]);
      out[key] = {
          {"array", value_type_name(kv.elem)}, {"count", kv.value.size()}, {"first", first}};
    } else {
      out[key] = kv.value;
    }
  }
  return out;
}

}  // namespace pare
