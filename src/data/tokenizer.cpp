// Tokenizers for decoder language models (see tokenizer.h). No LibTorch here: this file only turns
// text into ids and back.
#include "data/tokenizer.h"
#include "data/utf8.h"

#include <dlfcn.h>
#include <sentencepiece_processor.h>  // for sizeof only: its functions are reached through dlsym

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <mutex>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "base/error.h"
#include "base/fileio.h"

namespace pare {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// UTF-8 (data/utf8.h)

std::string hex(uint32_t v, int digits) {
  static const char* d = "0123456789ABCDEF";
  std::string s(static_cast<size_t>(digits), '0');
  for (int k = digits - 1; k >= 0; --k, v >>= 4) s[static_cast<size_t>(k)] = d[v & 0xF];
  return s;
}

// "U+0041 'A'" for a message: the character itself only when it prints on one line.
std::string describe_char(uint32_t cp) {
  std::string s = "U+" + hex(cp, cp > 0xFFFF ? 6 : 4);
  const bool printable = (cp > 0x20 && cp < 0x7F) || (cp >= 0xA1 && cp != 0xAD && cp != 0x2028 &&
                                                        cp != 0x2029 && (cp < 0x2000 || cp > 0x200F));
  if (printable) s += " '" + utf8_encode(cp) + "'";
  return s;
}

// "<0xXX>" -> XX, anything else -> -1.
int byte_piece_value(const std::string& p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  int v = 0;
  for (size_t k = 3; k < 5; ++k) {
    const char c = p[k];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

void check_id(int64_t id, int64_t vocab_size, const std::string& source) {
  PARE_CHECK(id >= 0 && id < vocab_size, source, ": token id ", id, " is outside the vocabulary [0, ",
             vocab_size, ")");
}

// decode() for every kind: the concatenation of decode_piece(prev, id), starting at prev = -1.
std::string decode_by_pieces(const Tokenizer& t, const std::vector<int64_t>& ids) {
  std::string out;
  int64_t prev = -1;
  for (int64_t id : ids) {
    out += t.decode_piece(prev, id);
    prev = id;
  }
  return out;
}

json read_json(const std::string& path) {
  const std::string bytes = read_file(path);
  try {
    return json::parse(bytes);
  } catch (const json::exception& e) {
    throw InputError(concat(path, ": invalid JSON: ", e.what()));
  }
}

// ---------------------------------------------------------------------------------------------
// llama2.c

constexpr int64_t kLlama2cBos = 1;
constexpr int64_t kLlama2cEos = 2;

class Llama2cTokenizer final : public Tokenizer {
 public:
  Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::string source)
      : pieces_(std::move(pieces)), scores_(std::move(scores)), source_(std::move(source)) {
    PARE_CHECK(pieces_.size() == scores_.size(), source_, ": ", pieces_.size(), " tokens but ",
               scores_.size(), " scores, expected one score per token");
    PARE_CHECK(pieces_.size() >= 3, source_, ": ", pieces_.size(),
               " tokens, expected at least 3 (<unk>, BOS 1, EOS 2)");
    static const std::string kSpm = "\xE2\x96\x81";  // U+2581, SentencePiece's space
    byte_value_.reserve(pieces_.size());
    for (size_t i = 0; i < pieces_.size(); ++i) {
      std::string& p = pieces_[i];
      for (size_t at = p.find(kSpm); at != std::string::npos; at = p.find(kSpm, at + 1))
        p.replace(at, kSpm.size(), " ");
      index_.emplace(p, static_cast<int>(i));  // duplicates: the lowest id wins
      byte_value_.push_back(byte_piece_value(p));
    }
  }

  std::string kind() const override { return "llama2c"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  int64_t bos_id() const override { return kLlama2cBos; }
  int64_t eos_id() const override { return kLlama2cEos; }

  std::vector<int64_t> encode(const std::string& text) const override {
    if (text.empty()) return {};
    std::vector<int> toks;
    toks.reserve(text.size() + 1);
    push_str(" ", toks);  // the dummy prefix
    // run.c: a UTF-8 lead byte and at most 3 continuation bytes form one lookup.
    std::string buf;
    for (size_t i = 0; i < text.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      if ((c & 0xC0) != 0x80) buf.clear();
      buf += static_cast<char>(c);
      const unsigned char next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
      if ((next & 0xC0) == 0x80 && buf.size() < 4) continue;
      push_str(buf, toks);
      buf.clear();
    }
    merge(toks);
    return std::vector<int64_t>(toks.begin(), toks.end());
  }

  std::string decode(const std::vector<int64_t>& ids) const override { return decode_by_pieces(*this, ids); }

  std::string decode_piece(int64_t prev, int64_t id) const override {
    check_id(id, vocab_size(), source_);
    if (id == kLlama2cBos || id == kLlama2cEos) return "";
    const auto i = static_cast<size_t>(id);
    if (byte_value_[i] >= 0) return std::string(1, static_cast<char>(byte_value_[i]));
    const std::string& p = pieces_[i];
    if ((prev == kLlama2cBos || prev < 0) && !p.empty() && p[0] == ' ') return p.substr(1);
    return p;
  }

 private:
  // The id of `s`, else its bytes by byte fallback (<0xXX> = byte + 3).
  void push_str(const std::string& s, std::vector<int>& toks) const {
    if (auto it = index_.find(s); it != index_.end()) {
      toks.push_back(it->second);
      return;
    }
    for (unsigned char b : s) {
      const int id = b + 3;
      PARE_CHECK(id < vocab_size(), source_, ": no token for byte 0x", hex(b, 2), " (byte fallback id ",
                 id, ", the vocabulary has ", vocab_size(), " tokens)");
      toks.push_back(id);
    }
  }

  // run.c's merge loop: while some adjacent pair concatenates to a token, merge the pair whose token
  // has the highest score (ties: leftmost). A max-heap over (score, left position) with lazy
  // invalidation gives the same sequence of merges: positions keep their order in the linked list,
  // and a node's piece only grows, so an entry whose ids still match is still that pair.
  void merge(std::vector<int>& toks) const {
    const int n = static_cast<int>(toks.size());
    if (n < 2) return;
    struct Cand {
      float score;
      int left, lid, rid, merged;
    };
    const auto lower = [](const Cand& a, const Cand& b) {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Cand, std::vector<Cand>, decltype(lower)> heap(lower);
    std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
    std::vector<char> alive(static_cast<size_t>(n), 1);
    for (int i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
    std::string key;
    const auto consider = [&](int l) {
      if (l < 0 || next[l] < 0) return;
      const int r = next[l];
      key = pieces_[static_cast<size_t>(toks[l])];
      key += pieces_[static_cast<size_t>(toks[r])];
      const auto it = index_.find(key);
      if (it == index_.end()) return;
      const float s = scores_[static_cast<size_t>(it->second)];
      if (!(s > -1e10f)) return;  // run.c starts its search at best_score = -1e10
      heap.push({s, l, toks[l], toks[r], it->second});
    };
    for (int i = 0; i + 1 < n; ++i) consider(i);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      const int l = c.left, r = next[l];
      if (!alive[l] || r < 0 || toks[l] != c.lid || toks[r] != c.rid) continue;
      toks[l] = c.merged;
      alive[r] = 0;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      consider(prev[l]);
      consider(l);
    }
    std::vector<int> out;
    for (int i = 0; i >= 0; i = next[i]) out.push_back(toks[i]);
    toks.swap(out);
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::string source_;
  std::unordered_map<std::string, int> index_;
  std::vector<int> byte_value_;  // raw byte of "<0xXX>" pieces, -1 for the others
};

// ---------------------------------------------------------------------------------------------
// SentencePiece

// Debian's libsentencepiece (0.1.97) carries its own protobuf 3.14 and exports those symbols. Linked
// into a process that also loads LibTorch's libprotobuf.so.32 (3.21), the two interpose and the
// process crashes at start-up (in libprotobuf's static initializers) or at the first model load
// (protobuf's version check). So pare never links against it: the library is dlopen()ed on first
// use with RTLD_LOCAL | RTLD_DEEPBIND, which keeps its symbols out of the process and binds its own
// references to its own protobuf, and the few SentencePieceProcessor members used are looked up by
// their mangled names and called with the object as first argument (Itanium C++ ABI).
// Nothing else in pare may call libsentencepiece directly.
struct SpStatus {  // the layout of sentencepiece::util::Status: one std::unique_ptr<Rep>
  void* rep = nullptr;
  SpStatus() = default;
  SpStatus(const SpStatus&) = delete;
  SpStatus& operator=(const SpStatus&) = delete;
  ~SpStatus();
  bool ok() const { return rep == nullptr; }
  std::string str() const;
};
static_assert(sizeof(SpStatus) == sizeof(sentencepiece::util::Status), "util::Status layout");

struct SpApi {
  std::string error;  // why the library could not be used ("" when it can)
  void (*construct)(void*) = nullptr;
  void (*destroy)(void*) = nullptr;
  SpStatus (*load)(void*, std::string_view) = nullptr;
  SpStatus (*encode)(const void*, std::string_view, std::vector<int>*) = nullptr;
  SpStatus (*decode)(const void*, const std::vector<int>&, std::string*) = nullptr;
  int (*piece_size)(const void*) = nullptr;
  const std::string& (*id_to_piece)(const void*, int) = nullptr;
  bool (*is_control)(const void*, int) = nullptr;
  bool (*is_byte)(const void*, int) = nullptr;
  bool (*is_unknown)(const void*, int) = nullptr;
  int (*bos)(const void*) = nullptr;
  int (*eos)(const void*) = nullptr;
  void (*status_destroy)(void*) = nullptr;
  std::string (*status_string)(const void*) = nullptr;
};

const SpApi& sp_api() {
  static const SpApi api = [] {
    SpApi a;
    const char* lib = "libsentencepiece.so.0";
    void* h = ::dlopen(lib, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
      const char* e = ::dlerror();
      a.error = concat("cannot load ", lib, ": ", e ? e : "unknown error");
      return a;
    }
    const auto sym = [&](auto& fn, const char* name) {
      void* p = ::dlsym(h, name);
      if (!p && a.error.empty()) a.error = concat(lib, " lacks ", name);
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    sym(a.construct, "_ZN13sentencepiece22SentencePieceProcessorC1Ev");
    sym(a.destroy, "_ZN13sentencepiece22SentencePieceProcessorD1Ev");
    sym(a.load, "_ZN13sentencepiece22SentencePieceProcessor4LoadESt17basic_string_viewIcSt11char_traitsIcEE");
    sym(a.encode,
        "_ZNK13sentencepiece22SentencePieceProcessor6EncodeESt17basic_string_viewIcSt11char_traitsIcEEPSt6vectorIiSaIiEE");
    sym(a.decode,
        "_ZNK13sentencepiece22SentencePieceProcessor6DecodeERKSt6vectorIiSaIiEEPNSt7__cxx1112basic_stringIcSt11char_"
        "traitsIcESaIcEEE");
    sym(a.piece_size, "_ZNK13sentencepiece22SentencePieceProcessor12GetPieceSizeEv");
    sym(a.id_to_piece, "_ZNK13sentencepiece22SentencePieceProcessor9IdToPieceB5cxx11Ei");
    sym(a.is_control, "_ZNK13sentencepiece22SentencePieceProcessor9IsControlEi");
    sym(a.is_byte, "_ZNK13sentencepiece22SentencePieceProcessor6IsByteEi");
    sym(a.is_unknown, "_ZNK13sentencepiece22SentencePieceProcessor9IsUnknownEi");
    sym(a.bos, "_ZNK13sentencepiece22SentencePieceProcessor6bos_idEv");
    sym(a.eos, "_ZNK13sentencepiece22SentencePieceProcessor6eos_idEv");
    sym(a.status_destroy, "_ZN13sentencepiece4util6StatusD1Ev");
    sym(a.status_string, "_ZNK13sentencepiece4util6Status8ToStringB5cxx11Ev");
    return a;
  }();
  return api;
}

SpStatus::~SpStatus() {
  if (rep) sp_api().status_destroy(this);
}
std::string SpStatus::str() const { return ok() ? "OK" : sp_api().status_string(this); }

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : api_(sp_api()), path_(path) {
    PARE_CHECK(api_.error.empty(), path, ": cannot load SentencePiece model: ", api_.error);
    sp_ = ::operator new(sizeof(sentencepiece::SentencePieceProcessor));
    api_.construct(sp_);
    std::string why;
    if (const SpStatus st = api_.load(sp_, path); !st.ok()) why = st.str();
    else if ((n_ = api_.piece_size(sp_)) <= 0) why = "the model has no pieces";
    if (!why.empty()) {
      release();
      throw InputError(concat(path, ": cannot load SentencePiece model: ", why));
    }
  }
  ~SentencePieceTokenizer() override { release(); }
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  std::string kind() const override { return "sentencepiece"; }
  int64_t vocab_size() const override { return n_; }
  int64_t bos_id() const override { return api_.bos(sp_); }
  int64_t eos_id() const override { return api_.eos(sp_); }

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    const SpStatus st = api_.encode(sp_, text, &ids);
    PARE_CHECK(st.ok(), path_, ": SentencePiece cannot encode the text: ", st.str());
    return std::vector<int64_t>(ids.begin(), ids.end());
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<int> v;
    v.reserve(ids.size());
    for (int64_t id : ids) {
      check_id(id, n_, path_);
      v.push_back(static_cast<int>(id));
    }
    return decode_ints(v);
  }

  std::string decode_piece(int64_t prev, int64_t id) const override {
    check_id(id, n_, path_);
    const int i = static_cast<int>(id);
    if (api_.is_control(sp_, i)) return "";
    if (api_.is_byte(sp_, i)) {
      const int b = byte_piece_value(api_.id_to_piece(sp_, i));
      PARE_ASSERT(b >= 0, "byte piece ", api_.id_to_piece(sp_, i));
      return std::string(1, static_cast<char>(b));
    }
    // At the start of the text (or after a control token such as BOS) SentencePiece's own decoder
    // decides about the leading space (dummy prefix); elsewhere the piece is its text.
    const bool at_start = prev < 0 || (prev < n_ && api_.is_control(sp_, static_cast<int>(prev)));
    if (at_start || api_.is_unknown(sp_, i)) return decode_ints({i});
    std::string p = api_.id_to_piece(sp_, i);
    static const std::string kSpm = "\xE2\x96\x81";
    for (size_t at = p.find(kSpm); at != std::string::npos; at = p.find(kSpm, at + 1)) p.replace(at, kSpm.size(), " ");
    return p;
  }

 private:
  void release() {
    api_.destroy(sp_);
    ::operator delete(sp_);
  }
  std::string decode_ints(const std::vector<int>& v) const {
    std::string out;
    const SpStatus st = api_.decode(sp_, v, &out);
    PARE_CHECK(st.ok(), path_, ": SentencePiece cannot decode the ids: ", st.str());
    return out;
  }

  const SpApi& api_;
  void* sp_ = nullptr;  // a sentencepiece::SentencePieceProcessor
  std::string path_;
  int64_t n_ = 0;
};

// ---------------------------------------------------------------------------------------------
// GPT-2 byte-level BPE

struct Range {
  uint32_t lo, hi;
};

// Approximations of \p{L} and \p{N} (see tokenizer.h), and Unicode White_Space. Sorted.
constexpr Range kLetters[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xAA, 0xAA},       {0xB5, 0xB5},       {0xBA, 0xBA},
    {0xC0, 0xD6},       {0xD8, 0xF6},       {0xF8, 0x2C1},      {0x2C6, 0x2D1},     {0x2E0, 0x2E4},
    {0x2EC, 0x2EC},     {0x2EE, 0x2EE},     {0x370, 0x374},     {0x376, 0x377},     {0x37A, 0x37D},
    {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},     {0x38E, 0x3A1},
    {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},     {0x531, 0x556},     {0x559, 0x559},
    {0x560, 0x588},     {0x5D0, 0x5EA},     {0x5EF, 0x5F2},     {0x620, 0x64A},     {0x66E, 0x66F},
    {0x671, 0x6D3},     {0x6D5, 0x6D5},     {0x6E5, 0x6E6},     {0x6EE, 0x6EF},     {0x6FA, 0x6FC},
    {0x6FF, 0x6FF},     {0x904, 0x939},     {0x93D, 0x93D},     {0x950, 0x950},     {0x958, 0x961},
    {0x971, 0x980},     {0xE01, 0xE30},     {0xE32, 0xE33},     {0xE40, 0xE46},     {0x10A0, 0x10C5},
    {0x10C7, 0x10C7},   {0x10CD, 0x10CD},   {0x10D0, 0x10FA},   {0x10FC, 0x1248},   {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},   {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B},   {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},   {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},   {0x2071, 0x2071},   {0x207F, 0x207F},
    {0x2090, 0x209C},   {0x3005, 0x3006},   {0x3031, 0x3035},   {0x303B, 0x303C},   {0x3041, 0x3096},
    {0x309D, 0x309F},   {0x30A1, 0x30FA},   {0x30FC, 0x30FF},   {0x3105, 0x312F},   {0x3131, 0x318E},
    {0x31A0, 0x31BF},   {0x31F0, 0x31FF},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA000, 0xA48C},
    {0xAC00, 0xD7A3},   {0xF900, 0xFA6D},   {0xFA70, 0xFAD9},   {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},
    {0xFF66, 0xFFBE},   {0x20000, 0x2A6DF}, {0x2A700, 0x2EBE0}, {0x2F800, 0x2FA1D},
};
constexpr Range kNumbers[] = {
    {0x30, 0x39},     {0xB2, 0xB3},     {0xB9, 0xB9},     {0xBC, 0xBE},     {0x660, 0x669},
    {0x6F0, 0x6F9},   {0x966, 0x96F},   {0xE50, 0xE59},   {0x2070, 0x2070}, {0x2074, 0x2079},
    {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF},
    {0x2776, 0x2793}, {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195},
    {0x3220, 0x3229}, {0x3248, 0x324F}, {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF},
    {0xFF10, 0xFF19},
};
constexpr Range kSpaces[] = {
    {0x09, 0x0D},     {0x20, 0x20},     {0x85, 0x85},     {0xA0, 0xA0}, {0x1680, 0x1680},
    {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};

template <size_t N>
bool in_ranges(const Range (&table)[N], uint32_t cp) {
  const Range* it = std::upper_bound(table, table + N, cp, [](uint32_t v, const Range& r) { return v < r.lo; });
  return it != table && cp <= (it - 1)->hi;
}

enum class CharClass { kSpace, kLetter, kNumber, kOther };
constexpr uint32_t kInvalidByte = 0xFFFFFFFF;  // an invalid UTF-8 byte: punctuation class

CharClass classify(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  if (cp == kInvalidByte) return CharClass::kOther;
  if (in_ranges(kSpaces, cp)) return CharClass::kSpace;
  if (in_ranges(kLetters, cp)) return CharClass::kLetter;
  if (in_ranges(kNumbers, cp)) return CharClass::kNumber;
  return CharClass::kOther;
}

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order. Index: byte; value: UTF-8 of the codepoint.
const std::array<std::string, 256>& byte_to_unicode() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    uint32_t extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool kept = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = utf8_encode(kept ? b : extra++);
    }
    return t;
  }();
  return table;
}

// Inverse of byte_to_unicode over codepoints (all < 324); -1 for codepoints it does not produce.
int unicode_to_byte(uint32_t cp) {
  static const std::vector<int> table = [] {
    std::vector<int> t(324, -1);
    for (int b = 0; b < 256; ++b) {
      uint32_t cp2 = 0;
      utf8_char(byte_to_unicode()[static_cast<size_t>(b)], 0, &cp2);
      t[cp2] = b;
    }
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

// What load_gpt2_bpe reads from either file layout.
struct Gpt2Spec {
  std::string source;                                       // for messages
  std::vector<std::pair<std::string, int64_t>> vocab;       // token -> id
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  std::vector<std::string> merge_where;                     // "FILE:LINE" or "FILE: model.merges[i]"
  std::vector<std::pair<std::string, int64_t>> added;       // added tokens, matched in raw text
  std::string unk;                                          // "" when none
  bool add_prefix_space = false;
  bool use_regex = true;
  bool ignore_merges = false;
};

class Gpt2BpeTokenizer final : public Tokenizer {
 public:
  explicit Gpt2BpeTokenizer(Gpt2Spec spec) : source_(std::move(spec.source)) {
    add_prefix_space_ = spec.add_prefix_space;
    use_regex_ = spec.use_regex;
    ignore_merges_ = spec.ignore_merges;
    PARE_CHECK(!spec.vocab.empty(), source_, ": the vocabulary is empty");
    int64_t n = 0;
    for (const auto& [tok, id] : spec.vocab) n = std::max(n, id + 1);
    for (const auto& [tok, id] : spec.added) n = std::max(n, id + 1);
    tokens_.assign(static_cast<size_t>(n), std::string());
    has_.assign(static_cast<size_t>(n), 0);
    decoded_.assign(static_cast<size_t>(n), std::string());
    const auto set_token = [&](const std::string& tok, int64_t id, bool added) {
      const auto i = static_cast<size_t>(id);
      if (has_[i]) {
        PARE_CHECK(tokens_[i] == tok, source_, ": id ", id, " is given to both '", tokens_[i], "' and '", tok, "'");
        return;
      }
      has_[i] = 1;
      tokens_[i] = tok;
      decoded_[i] = added ? tok : bytes_of(tok);
      vocab_.emplace(tok, id);
    };
    for (const auto& [tok, id] : spec.vocab) set_token(tok, id, false);
    for (const auto& [tok, id] : spec.added) {
      set_token(tok, id, true);
      if (!tok.empty()) added_.emplace_back(tok, id);
    }
    // Longest first, so that of two added tokens starting at the same place the longer one wins.
    std::stable_sort(added_.begin(), added_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    for (size_t r = 0; r < spec.merges.size(); ++r) {
      const auto& [a, b] = spec.merges[r];
      const int64_t ia = find(a), ib = find(b), im = find(a + b);
      PARE_CHECK(ia >= 0 && ib >= 0 && im >= 0, spec.merge_where[r], ": merge '", a, " ", b, "': token '",
                 ia < 0 ? a : ib < 0 ? b : a + b, "' is not in the vocabulary");
      merges_.emplace(pair_key(ia, ib), std::make_pair(static_cast<int64_t>(r), im));
    }
    for (size_t b = 0; b < 256; ++b) byte_id_[b] = find(byte_to_unicode()[b]);
    unk_id_ = spec.unk.empty() ? -1 : find(spec.unk);
    PARE_CHECK(spec.unk.empty() || unk_id_ >= 0, source_, ": model.unk_token '", spec.unk,
               "' is not in the vocabulary");
    eos_ = find("<|endoftext|>");
  }

  std::string kind() const override { return "gpt2-bpe"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  int64_t bos_id() const override { return eos_; }
  int64_t eos_id() const override { return eos_; }

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> out;
    size_t pos = 0;
    while (pos <= text.size()) {
      // The next added token (earliest; longest at the same place).
      size_t best = std::string::npos;
      const std::pair<std::string, int64_t>* hit = nullptr;
      for (const auto& a : added_) {
        const size_t at = text.find(a.first, pos);
        if (at < best) best = at, hit = &a;
      }
      const size_t end = hit ? best : text.size();
      if (end > pos) encode_segment(text, pos, end, out);
      if (!hit) break;
      out.push_back(hit->second);
      pos = best + hit->first.size();
    }
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override { return decode_by_pieces(*this, ids); }

  std::string decode_piece(int64_t /*prev*/, int64_t id) const override {
    check_id(id, vocab_size(), source_);
    PARE_CHECK(has_[static_cast<size_t>(id)], source_, ": token id ", id, " has no token (a gap in the vocabulary)");
    return decoded_[static_cast<size_t>(id)];
  }

 private:
  static uint64_t pair_key(int64_t a, int64_t b) {
    return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b);
  }
  int64_t find(const std::string& tok) const {
    const auto it = vocab_.find(tok);
    return it == vocab_.end() ? -1 : it->second;
  }

  // The raw bytes a vocabulary token stands for; characters outside the byte-to-unicode table are
  // kept as their UTF-8 (a real byte-level vocabulary has none).
  static std::string bytes_of(const std::string& tok) {
    std::string out;
    for (size_t i = 0; i < tok.size();) {
      uint32_t cp = 0;
      const size_t len = utf8_char(tok, i, &cp);
      if (len == 0) {
        out += tok[i++];
        continue;
      }
      const int b = unicode_to_byte(cp);
      if (b >= 0) out += static_cast<char>(b);
      else out.append(tok, i, len);
      i += len;
    }
    return out;
  }

  // Text between added tokens: ByteLevel pre-tokenizer, then BPE per chunk.
  void encode_segment(const std::string& text, size_t begin, size_t end, std::vector<int64_t>& out) const {
    std::string seg = text.substr(begin, end - begin);
    auto base = static_cast<int64_t>(begin);  // byte offset of seg[0] in text, for messages
    if (add_prefix_space_ && seg[0] != ' ') {
      seg.insert(seg.begin(), ' ');
      base -= 1;  // the added space itself is at "offset -1"
    }
    if (!use_regex_) {
      bpe_chunk(seg, base, out);
      return;
    }
    for (const std::string& chunk : gpt2_pretokenize(seg)) {
      bpe_chunk(chunk, base, out);
      base += static_cast<int64_t>(chunk.size());
    }
  }

  // GPT-2 encoder.py bpe(): symbols are the chunk's bytes (as byte-level tokens); repeatedly take
  // the adjacent pair with the lowest merge rank and merge all its occurrences, left to right.
  void bpe_chunk(const std::string& chunk, int64_t offset, std::vector<int64_t>& out) const {
    if (ignore_merges_) {
      std::string mapped;
      for (unsigned char b : chunk) mapped += byte_to_unicode()[b];
      if (const int64_t id = find(mapped); id >= 0) {
        out.push_back(id);
        return;
      }
    }
    std::vector<int64_t> sym;
    sym.reserve(chunk.size());
    for (size_t i = 0; i < chunk.size(); ++i) {
      const auto b = static_cast<unsigned char>(chunk[i]);
      int64_t id = byte_id_[b];
      if (id < 0) {
        PARE_CHECK(unk_id_ >= 0, source_, ": no token for byte 0x", hex(b, 2), " ('", byte_to_unicode()[b],
                   "') at byte offset ", offset + static_cast<int64_t>(i), " of the text, and no unk_token");
        if (!sym.empty() && sym.back() == unk_id_) continue;  // runs of unknown bytes: one unk
        id = unk_id_;
      }
      sym.push_back(id);
    }
    std::vector<int64_t> next;
    while (sym.size() > 1) {
      int64_t best_rank = -1, first = -1, second = -1, merged = -1;
      for (size_t k = 0; k + 1 < sym.size(); ++k) {
        const auto it = merges_.find(pair_key(sym[k], sym[k + 1]));
        if (it != merges_.end() && (best_rank < 0 || it->second.first < best_rank)) {
          best_rank = it->second.first, first = sym[k], second = sym[k + 1], merged = it->second.second;
        }
      }
      if (best_rank < 0) break;
      next.clear();
      for (size_t k = 0; k < sym.size(); ++k) {
        if (k + 1 < sym.size() && sym[k] == first && sym[k + 1] == second) {
          next.push_back(merged);
          ++k;
        } else {
          next.push_back(sym[k]);
        }
      }
      sym.swap(next);
    }
    out.insert(out.end(), sym.begin(), sym.end());
  }

  std::string source_;
  bool add_prefix_space_ = false, use_regex_ = true, ignore_merges_ = false;
  std::vector<std::string> tokens_;   // id -> token text (byte-level characters)
  std::vector<std::string> decoded_;  // id -> raw bytes
  std::vector<char> has_;             // id has a token
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::pair<std::string, int64_t>> added_;
  std::unordered_map<uint64_t, std::pair<int64_t, int64_t>> merges_;  // (a, b) -> (rank, merged id)
  std::array<int64_t, 256> byte_id_{};
  int64_t unk_id_ = -1, eos_ = -1;
};

// {"token": id, ...} at `where` (a file or a key in one).
std::vector<std::pair<std::string, int64_t>> read_vocab(const json& v, const std::string& where) {
  PARE_CHECK(v.is_object(), where, ": expected an object {\"token\": id, ...}, got ", v.type_name());
  std::vector<std::pair<std::string, int64_t>> out;
  out.reserve(v.size());
  for (const auto& [tok, id] : v.items()) {
    PARE_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (int64_t{1} << 31),
               where, ": token '", tok, "': expected a non-negative integer id, got ", id.dump());
    out.emplace_back(tok, id.get<int64_t>());
  }
  return out;
}

// "a b" -> (a, b); false unless exactly one space with text on both sides.
bool split_merge(const std::string& line, std::pair<std::string, std::string>* out) {
  const size_t sp = line.find(' ');
  if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size() || line.find(' ', sp + 1) != std::string::npos)
    return false;
  *out = {line.substr(0, sp), line.substr(sp + 1)};
  return true;
}

Gpt2Spec read_vocab_merges(const std::string& dir) {
  Gpt2Spec s;
  s.source = dir;
  const std::string vocab_path = (fs::path(dir) / "vocab.json").string();
  const std::string merges_path = (fs::path(dir) / "merges.txt").string();
  s.vocab = read_vocab(read_json(vocab_path), vocab_path);
  const std::string text = read_file(merges_path);
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    std::pair<std::string, std::string> m;
    PARE_CHECK(split_merge(line, &m), merges_path, ":", line_no,
               ": expected two tokens separated by one space, got '", line, "'");
    s.merges.push_back(std::move(m));
    s.merge_where.push_back(concat(merges_path, ":", line_no));
  }
  for (const auto& [tok, id] : s.vocab)
    if (tok == "<|endoftext|>") s.added.emplace_back(tok, id);
  return s;
}

// A Hugging Face tokenizer.json (already parsed) with a byte-level BPE model.
Gpt2Spec read_tokenizer_json(const json& j, const std::string& path) {
  Gpt2Spec s;
  s.source = path;
  const auto key = [&](const std::string& k) { return concat(path, ": key ", k); };
  PARE_CHECK(j.is_object() && j.contains("model") && j["model"].is_object(), key("model"),
             ": expected an object (a Hugging Face tokenizer.json)");
  const json& m = j["model"];
  const std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "BPE";
  PARE_CHECK(type == "BPE", key("model.type"), ": expected \"BPE\" (byte-level BPE), got \"", type, "\"");
  PARE_CHECK(m.contains("vocab"), key("model.vocab"), ": missing");
  s.vocab = read_vocab(m["vocab"], key("model.vocab"));
  PARE_CHECK(m.contains("merges") && m["merges"].is_array(), key("model.merges"),
             ": expected an array of \"a b\" strings or [a, b] pairs");
  const json& merges = m["merges"];
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    const std::string where = concat(key("model.merges"), "[", i, "]");
    std::pair<std::string, std::string> mg;
    if (e.is_string()) {
      PARE_CHECK(split_merge(e.get<std::string>(), &mg), where, ": expected \"a b\", got ", e.dump());
    } else {
      PARE_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(), where,
                 ": expected \"a b\" or [a, b], got ", e.dump());
      mg = {e[0].get<std::string>(), e[1].get<std::string>()};
    }
    s.merges.push_back(std::move(mg));
    s.merge_where.push_back(where);
  }
  const auto null_or_empty = [&](const char* k) {
    if (!m.contains(k) || m[k].is_null()) return;
    PARE_CHECK(m[k].is_string() && m[k].get<std::string>().empty(), key(std::string("model.") + k),
               ": expected null (not supported), got ", m[k].dump());
  };
  null_or_empty("continuing_subword_prefix");
  null_or_empty("end_of_word_suffix");
  if (m.contains("dropout") && !m["dropout"].is_null())
    PARE_CHECK(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0, key("model.dropout"),
               ": expected null (BPE dropout is not supported), got ", m["dropout"].dump());
  if (m.contains("byte_fallback") && !m["byte_fallback"].is_null())
    PARE_CHECK(m["byte_fallback"].is_boolean() && !m["byte_fallback"].get<bool>(), key("model.byte_fallback"),
               ": expected false (byte-level BPE has every byte), got ", m["byte_fallback"].dump());
  if (m.contains("ignore_merges") && !m["ignore_merges"].is_null()) {
    PARE_CHECK(m["ignore_merges"].is_boolean(), key("model.ignore_merges"), ": expected true or false");
    s.ignore_merges = m["ignore_merges"].get<bool>();
  }
  if (m.contains("unk_token") && !m["unk_token"].is_null()) {
    PARE_CHECK(m["unk_token"].is_string(), key("model.unk_token"), ": expected a string or null");
    s.unk = m["unk_token"].get<std::string>();
  }
  PARE_CHECK(!j.contains("normalizer") || j["normalizer"].is_null(), key("normalizer"),
             ": expected null (normalizers are not supported), got ", j["normalizer"].dump());
  PARE_CHECK(j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object(), key("pre_tokenizer"),
             ": expected {\"type\": \"ByteLevel\", ...} (byte-level BPE)");
  const json* pt = &j["pre_tokenizer"];
  std::string pt_key = "pre_tokenizer";
  if (pt->contains("type") && (*pt)["type"] == "Sequence") {
    PARE_CHECK(pt->contains("pretokenizers") && (*pt)["pretokenizers"].is_array() &&
                   (*pt)["pretokenizers"].size() == 1,
               key("pre_tokenizer.pretokenizers"),
               ": expected exactly one ByteLevel pre-tokenizer (others are not supported)");
    pt = &(*pt)["pretokenizers"][0];
    pt_key = "pre_tokenizer.pretokenizers[0]";
  }
  PARE_CHECK(pt->is_object() && pt->contains("type") && (*pt)["type"] == "ByteLevel", key(pt_key + ".type"),
             ": expected \"ByteLevel\" (only GPT-2's byte-level pre-tokenizer is supported), got ",
             pt->is_object() && pt->contains("type") ? (*pt)["type"].dump() : std::string("nothing"));
  const auto flag = [&](const char* k, bool* out) {
    if (!pt->contains(k) || (*pt)[k].is_null()) return;
    PARE_CHECK((*pt)[k].is_boolean(), key(pt_key + "." + k), ": expected true or false");
    *out = (*pt)[k].get<bool>();
  };
  flag("add_prefix_space", &s.add_prefix_space);
  flag("use_regex", &s.use_regex);
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const json& at = j["added_tokens"];
    PARE_CHECK(at.is_array(), key("added_tokens"), ": expected an array");
    for (size_t i = 0; i < at.size(); ++i) {
      const json& t = at[i];
      PARE_CHECK(t.is_object() && t.contains("id") && t["id"].is_number_integer() && t["id"].get<int64_t>() >= 0 &&
                     t["id"].get<int64_t>() < (int64_t{1} << 31) && t.contains("content") && t["content"].is_string(),
                 key(concat("added_tokens[", i, "]")), ": expected {\"id\": non-negative integer, \"content\": string}");
      s.added.emplace_back(t["content"].get<std::string>(), t["id"].get<int64_t>());
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Character level

class CharTokenizer final : public Tokenizer {
 public:
  // `chars`: distinct single UTF-8 characters (checked by the callers).
  CharTokenizer(std::vector<std::string> chars, std::string source)
      : chars_(std::move(chars)), source_(std::move(source)) {
    for (size_t i = 0; i < chars_.size(); ++i) {
      uint32_t cp = 0;
      utf8_char(chars_[i], 0, &cp);
      index_.emplace(cp, static_cast<int64_t>(i));
    }
  }

  std::string kind() const override { return "char"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(chars_.size()); }
  int64_t bos_id() const override { return -1; }
  int64_t eos_id() const override { return -1; }
  const std::vector<std::string>& chars() const { return chars_; }

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      uint32_t cp = 0;
      const size_t len = utf8_char(text, i, &cp);
      PARE_CHECK(len > 0, source_, ": invalid UTF-8 at byte offset ", i, " of the text (byte 0x",
                 hex(static_cast<unsigned char>(text[i]), 2), ")");
      const auto it = index_.find(cp);
      PARE_CHECK(it != index_.end(), source_, ": character ", describe_char(cp), " at byte offset ", i,
                 " of the text is not among the tokenizer's ", chars_.size(), " characters");
      out.push_back(it->second);
      i += len;
    }
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override { return decode_by_pieces(*this, ids); }

  std::string decode_piece(int64_t /*prev*/, int64_t id) const override {
    check_id(id, vocab_size(), source_);
    return chars_[static_cast<size_t>(id)];
  }

 private:
  std::vector<std::string> chars_;
  std::string source_;
  std::unordered_map<uint32_t, int64_t> index_;
};

std::unique_ptr<Tokenizer> char_tokenizer_from_json(const json& j, const std::string& path) {
  const auto key = [&](const std::string& k) { return concat(path, ": key ", k); };
  PARE_CHECK(j.is_object() && j.contains("kind") && j["kind"] == "char", key("kind"), ": expected \"char\"");
  PARE_CHECK(j.contains("chars") && j["chars"].is_array() && !j["chars"].empty(), key("chars"),
             ": expected a non-empty array of one-character strings");
  std::vector<std::string> chars;
  std::unordered_map<std::string, size_t> seen;
  for (size_t i = 0; i < j["chars"].size(); ++i) {
    const json& c = j["chars"][i];
    const std::string k = concat("chars[", i, "]");
    PARE_CHECK(c.is_string(), key(k), ": expected a one-character string, got ", c.dump());
    const std::string s = c.get<std::string>();
    uint32_t cp = 0;
    PARE_CHECK(!s.empty() && utf8_char(s, 0, &cp) == s.size(), key(k),
               ": expected exactly one UTF-8 character, got ", c.dump());
    const auto [it, fresh] = seen.emplace(s, i);
    PARE_CHECK(fresh, key(k), ": duplicate character ", describe_char(cp), " (also chars[", it->second, "])");
    chars.push_back(s);
  }
  return std::make_unique<CharTokenizer>(std::move(chars), path);
}

// ---------------------------------------------------------------------------------------------
// Byte level

class ByteTokenizer final : public Tokenizer {
 public:
  std::string kind() const override { return "byte"; }
  int64_t vocab_size() const override { return 256; }
  int64_t bos_id() const override { return -1; }
  int64_t eos_id() const override { return -1; }
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> out;
    out.reserve(text.size());
    for (unsigned char b : text) out.push_back(b);
    return out;
  }
  std::string decode(const std::vector<int64_t>& ids) const override { return decode_by_pieces(*this, ids); }
  std::string decode_piece(int64_t /*prev*/, int64_t id) const override {
    check_id(id, 256, "byte tokenizer");
    return std::string(1, static_cast<char>(id));
  }
};

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// A parsed JSON tokenizer file: pare's char format or a Hugging Face tokenizer.json.
std::unique_ptr<Tokenizer> tokenizer_from_json(const json& j, const std::string& path) {
  if (j.is_object() && j.contains("kind")) {
    if (j["kind"] == "byte") return make_byte_tokenizer();  // pare's byte-level models
    PARE_CHECK(j["kind"] == "char", path, ": key kind: expected \"char\" or \"byte\", got ",
               j["kind"].dump());
    return char_tokenizer_from_json(j, path);
  }
  PARE_CHECK(j.is_object() && j.contains("model"), path,
             ": expected a Hugging Face tokenizer.json (key model) or a pare char tokenizer (key kind: \"char\")");
  return std::make_unique<Gpt2BpeTokenizer>(read_tokenizer_json(j, path));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public functions

std::vector<std::string> gpt2_pretokenize(const std::string& text) {
  std::vector<uint32_t> cp;
  std::vector<size_t> off;
  for (size_t i = 0; i < text.size();) {
    uint32_t c = 0;
    size_t len = utf8_char(text, i, &c);
    if (len == 0) c = kInvalidByte, len = 1;
    cp.push_back(c);
    off.push_back(i);
    i += len;
  }
  off.push_back(text.size());
  const size_t m = cp.size();
  const auto cls = [&](size_t k) { return classify(cp[k]); };
  const auto run_end = [&](size_t k, CharClass c) {
    while (k < m && cls(k) == c) ++k;
    return k;
  };
  std::vector<std::string> out;
  for (size_t i = 0; i < m;) {
    size_t end = 0;
    // 's|'t|'re|'ve|'m|'ll|'d
    if (cp[i] == '\'' && i + 1 < m) {
      const uint32_t a = cp[i + 1], b = i + 2 < m ? cp[i + 2] : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') end = i + 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) end = i + 3;
    }
    if (end == 0) {
      // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space, then a run of one class.
      const size_t j = cp[i] == ' ' && i + 1 < m ? i + 1 : i;
      const CharClass c = cls(j);
      if (c != CharClass::kSpace) {
        end = run_end(j, c);
      } else {
        // cp[i] is whitespace. '\s+(?!\S)': the run, less its last character when a non-space
        // follows (that one joins the next word); '\s+': a single whitespace before a non-space.
        const size_t e = run_end(i, CharClass::kSpace);
        end = (e == m || e - i == 1) ? e : e - 1;
      }
    }
    out.push_back(text.substr(off[i], off[end] - off[i]));
    i = end;
  }
  return out;
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path) {
  const std::string bytes = read_file(path);
  const auto read_i32 = [&](size_t off) {
    int32_t v;
    std::memcpy(&v, bytes.data() + off, 4);
    return v;
  };
  PARE_CHECK(bytes.size() >= 4, path, ": truncated llama2.c tokenizer at byte offset 0: expected a 4-byte ",
             "max_token_length, the file has ", bytes.size(), " bytes");
  const int32_t max_len = read_i32(0);
  PARE_CHECK(max_len > 0 && max_len <= 65536, path, ": byte offset 0: max_token_length ", max_len,
             ", expected 1..65536 (not a llama2.c tokenizer.bin?)");
  std::vector<std::string> pieces;
  std::vector<float> scores;
  size_t off = 4;
  while (off < bytes.size()) {
    const size_t i = pieces.size();
    PARE_CHECK(bytes.size() - off >= 8, path, ": truncated at byte offset ", off, ": token ", i,
               " needs a float32 score and an int32 length (8 bytes), ", bytes.size() - off, " left");
    float score;
    std::memcpy(&score, bytes.data() + off, 4);
    const int32_t len = read_i32(off + 4);
    PARE_CHECK(len >= 0 && len <= max_len, path, ": byte offset ", off + 4, ": token ", i, " has length ", len,
               ", expected 0..", max_len, " (max_token_length)");
    off += 8;
    PARE_CHECK(bytes.size() - off >= static_cast<size_t>(len), path, ": truncated at byte offset ", off,
               ": token ", i, " needs ", len, " bytes, ", bytes.size() - off, " left");
    pieces.emplace_back(bytes.data() + off, static_cast<size_t>(len));
    scores.push_back(score);
    off += static_cast<size_t>(len);
  }
  return make_llama2c_tokenizer(std::move(pieces), std::move(scores), path);
}

std::unique_ptr<Tokenizer> make_llama2c_tokenizer(std::vector<std::string> pieces, std::vector<float> scores,
                                                  const std::string& source) {
  return std::make_unique<Llama2cTokenizer>(std::move(pieces), std::move(scores), source);
}

std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::string& path) {
  PARE_CHECK(fs::exists(path), path, ": tokenizer not found (expected a folder with vocab.json and ",
             "merges.txt, or a tokenizer.json)");
  if (fs::is_directory(path)) {
    const fs::path dir(path);
    if (fs::exists(dir / "vocab.json") || fs::exists(dir / "merges.txt") || !fs::exists(dir / "tokenizer.json"))
      return std::make_unique<Gpt2BpeTokenizer>(read_vocab_merges(path));
    const std::string tj = (dir / "tokenizer.json").string();
    return std::make_unique<Gpt2BpeTokenizer>(read_tokenizer_json(read_json(tj), tj));
  }
  return std::make_unique<Gpt2BpeTokenizer>(read_tokenizer_json(read_json(path), path));
}

std::unique_ptr<Tokenizer> build_char_tokenizer(const std::string& text) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t len = utf8_char(text, i, &cp);
    PARE_CHECK(len > 0, "char tokenizer: invalid UTF-8 at byte offset ", i, " of the text (byte 0x",
               hex(static_cast<unsigned char>(text[i]), 2), ")");
    cps.push_back(cp);
    i += len;
  }
  std::sort(cps.begin(), cps.end());
  cps.erase(std::unique(cps.begin(), cps.end()), cps.end());
  PARE_CHECK(!cps.empty(), "char tokenizer: the text is empty, expected at least one character");
  std::vector<std::string> chars;
  chars.reserve(cps.size());
  for (uint32_t cp : cps) chars.push_back(utf8_encode(cp));
  return std::make_unique<CharTokenizer>(std::move(chars), "char tokenizer");
}

std::string char_tokenizer_json(const Tokenizer& t) {
  const auto* c = dynamic_cast<const CharTokenizer*>(&t);
  PARE_CHECK(c, "only a char tokenizer can be saved this way, got kind \"", t.kind(), "\"");
  const json j = {{"kind", "char"}, {"chars", c->chars()}};
  return j.dump(1) + "\n";
}

void save_char_tokenizer(const Tokenizer& t, const std::string& path) {
  PARE_CHECK(t.kind() == "char", path, ": only a char tokenizer can be saved this way, got kind \"", t.kind(), "\"");
  write_file_atomic(path, char_tokenizer_json(t));
}

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  PARE_CHECK(fs::exists(path), path, ": tokenizer not found");
  if (fs::is_directory(path)) {
    const fs::path dir(path);
    if (fs::exists(dir / "tokenizer.json")) return load_tokenizer((dir / "tokenizer.json").string());
    if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) return load_gpt2_bpe(path);
    if (fs::exists(dir / "tokenizer.model")) return load_sentencepiece((dir / "tokenizer.model").string());
    if (fs::exists(dir / "tokenizer.bin")) return load_llama2c_tokenizer((dir / "tokenizer.bin").string());
    throw InputError(concat(path, ": no tokenizer in this folder: expected tokenizer.json, vocab.json + ",
                            "merges.txt, tokenizer.model or tokenizer.bin"));
  }
  if (ends_with(path, ".model")) return load_sentencepiece(path);
  if (ends_with(path, ".bin")) return load_llama2c_tokenizer(path);
  if (ends_with(path, ".json")) return tokenizer_from_json(read_json(path), path);
  const std::string head = read_file(path).substr(0, 1);
  if (head == "{") return tokenizer_from_json(read_json(path), path);
  if (head == "\x0A") return load_sentencepiece(path);
  return load_llama2c_tokenizer(path);
}

void check_tokenizer_vocab(const Tokenizer& t, int64_t vocab_size, const std::string& source, bool allow_smaller) {
  const int64_t n = t.vocab_size();
  if (n == vocab_size || (allow_smaller && n < vocab_size)) return;
  throw InputError(concat(source, ": tokenizer has ", n, " tokens but the model's vocab_size is ", vocab_size,
                          allow_smaller ? " (expected at most that many)" : ""));
}

}  // namespace pare
