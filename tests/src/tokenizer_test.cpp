// Tokenizers (src/data/tokenizer.h). Reference values come from outside this code:
//   * llama2c vs libsentencepiece: tok512.bin and tok512.model (shared data, $PARE_SHARED_DATA;
//     skipped when absent) hold the same 512 pieces and scores; SentencePiece's BPE merges the same
//     way as llama2.c's run.c, so both must give the same ids. They differ only where SentencePiece's
//     normalizer (remove_extra_whitespaces, on in tok512.model) drops leading/trailing spaces and
//     collapses runs of spaces: there SentencePiece's ids are llama2.c's ids of the collapsed text.
//   * "Once upon a time" ids, the tiny llama2.c vocabulary, the GPT-2 fixture
//     (tests/fixtures/tokenizer/gpt2_tiny*) and the char ids: derived by hand (see the comments).
//   * GPT-2 pre-tokenization: chunks computed with Python's `regex` module and GPT-2's pattern.
//   * Tiny Shakespeare has 65 distinct characters, and "hii there" is [46, 47, 47, 1, 58, 46, 43, 56,
//     43] in its sorted character vocabulary (nanoGPT / "Let's build GPT").
#include "data/tokenizer.h"

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/fileio.h"
#include "test_util.h"

namespace pare {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using pare_test::fixture;
using pare_test::TempDir;
using Ids = std::vector<int64_t>;

// $PARE_SHARED_DATA/rel, or "" when it is not there.
std::string shared_data(const std::string& rel) {
  const char* e = std::getenv("PARE_SHARED_DATA");
  const std::string p = std::string(e && *e ? e : "") + "/" + rel;
  return e && *e && std::filesystem::exists(p) ? p : "";
}
#define SHARED_OR_SKIP(var, rel) \
  const std::string var = shared_data(rel); \
  if (var.empty()) GTEST_SKIP() << "$PARE_SHARED_DATA/" << (rel) << " not found"

// What SentencePiece's remove_extra_whitespaces does to a text: no leading or trailing spaces,
// runs of spaces collapsed to one (only ' '; newlines are kept).
std::string collapse_spaces(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// decode as a stream: decode_piece(prev, id) from prev = -1.
std::string stream_decode(const Tokenizer& t, const Ids& ids) {
  std::string out;
  int64_t prev = -1;
  for (int64_t id : ids) out += t.decode_piece(prev, id), prev = id;
  return out;
}

// ---------------------------------------------------------------------------------------------
// llama2.c vs SentencePiece on the real tok512 vocabulary

struct Tok512 {
  std::unique_ptr<Tokenizer> l2c, sp;
};

const std::vector<std::string> kShortTexts = {
    "Once upon a time",
    "Hello, World!",
    "Lily's mom said, \"Lily, let's go to the park.\"",
    "\xE2\x80\x9CWow,\xE2\x80\x9D she said. It was 2023.",  // curly quotes: pieces of tok512
    "Caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80",  // byte fallback
    "line one\nline two\n\n",
    "a",
    "The end.<|endoftext|>",
    "tab\there 12345 67",
};

TEST(Tokenizer, Llama2cOnceUponATimeHandChecked) {
  SHARED_OR_SKIP(bin, "llama2c/tok512.bin");
  const auto t = load_llama2c_tokenizer(bin);
  EXPECT_EQ(t->kind(), "llama2c");
  EXPECT_EQ(t->vocab_size(), 512);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  // tok512: " Once" 403 (score -144), " upon" 407, " a" 261, " time" 378. By hand from " Once upon a
  // time": " t" (score 0) and " a" (-2) merge first, then "im" (-29), "on" (-30), " O" (-60),
  // " On" (-62), "ce" (-72), " u" (-59 comes before " On"), " up" (-91), "ime" (-110),
  // " time" (-119), " Once" (-144), " upon" (-148).
  EXPECT_EQ(t->encode("Once upon a time"), (Ids{403, 407, 261, 378}));
  EXPECT_EQ(t->decode({403, 407, 261, 378}), "Once upon a time");
  EXPECT_EQ(t->decode_piece(1, 403), "Once");     // after BOS the leading space goes (run.c)
  EXPECT_EQ(t->decode_piece(403, 407), " upon");
  EXPECT_EQ(t->decode_piece(403, 13), "\n");      // <0x0A> = byte 10 + 3
  EXPECT_EQ(t->decode_piece(403, 1), "");         // BOS
  EXPECT_EQ(t->encode(""), Ids{});
}

class TokenizerTok512 : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = shared_data("llama2c/tok512.bin");
    model_ = shared_data("llama2c/tok512.model");
    if (bin_.empty() || model_.empty()) GTEST_SKIP() << "$PARE_SHARED_DATA/llama2c/tok512.{bin,model} not found";
    l2c_ = load_llama2c_tokenizer(bin_);
    sp_ = load_sentencepiece(model_);
  }
  std::string bin_, model_;
  std::unique_ptr<Tokenizer> l2c_, sp_;
};

TEST_F(TokenizerTok512, SentencePieceModelBasics) {
  EXPECT_EQ(sp_->kind(), "sentencepiece");
  EXPECT_EQ(sp_->vocab_size(), 512);
  EXPECT_EQ(sp_->bos_id(), 1);
  EXPECT_EQ(sp_->eos_id(), 2);
  EXPECT_EQ(sp_->encode("Once upon a time"), (Ids{403, 407, 261, 378}));
}

TEST_F(TokenizerTok512, ShortTextsAgreeWithSentencePiece) {
  for (const std::string& s : kShortTexts) {
    SCOPED_TRACE(s);
    const Ids ids = l2c_->encode(s);
    EXPECT_EQ(ids, sp_->encode(s));
    EXPECT_EQ(l2c_->decode(ids), s);
    EXPECT_EQ(sp_->decode(ids), s);
    EXPECT_EQ(stream_decode(*l2c_, ids), s);
    EXPECT_EQ(stream_decode(*sp_, ids), s);
  }
}

TEST_F(TokenizerTok512, TinyStoriesSampleAgreesWithSentencePiece) {
  SHARED_OR_SKIP(path, "llama2c/tinystories_sample.txt");
  const std::string text = read_file(path);
  const Ids ids = l2c_->encode(text);
  EXPECT_GT(ids.size(), 500u);
  EXPECT_LT(ids.size(), text.size());
  EXPECT_EQ(ids, sp_->encode(text));
  EXPECT_EQ(l2c_->decode(ids), text);
  EXPECT_EQ(sp_->decode(ids), text);
  // Line by line as well (each line starts a new dummy prefix).
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) EXPECT_EQ(l2c_->encode(line), sp_->encode(line)) << line;
}

// Where they legitimately differ: SentencePiece's normalizer drops leading/trailing spaces and
// collapses runs of spaces before its BPE; llama2.c encodes every byte. run.c's result for the
// collapsed text is SentencePiece's result, and only llama2.c round-trips the original.
TEST_F(TokenizerTok512, ExtraSpacesDifferOnlyByNormalization) {
  for (const std::string s : {"  two  spaces here ", " leading", "trailing  ", "a   b\n  c"}) {
    SCOPED_TRACE(s);
    EXPECT_NE(l2c_->encode(s), sp_->encode(s));
    EXPECT_EQ(sp_->encode(s), l2c_->encode(collapse_spaces(s)));
    EXPECT_EQ(l2c_->decode(l2c_->encode(s)), s);
  }
}

TEST_F(TokenizerTok512, WikiText2AgreesAfterNormalization) {
  SHARED_OR_SKIP(path, "wikitext-2/wiki.test.raw");
  const std::string text = read_file(path);  // 1.3 MB, 809k tokens, much non-ASCII
  const std::string norm = collapse_spaces(text);
  const Ids ids = l2c_->encode(norm);
  EXPECT_EQ(ids, sp_->encode(text));
  EXPECT_EQ(l2c_->decode(ids), norm);
  EXPECT_EQ(l2c_->decode(l2c_->encode(text)), text);
}

// GGUF metadata holds the same vocabulary in SentencePiece form ("▁" for space, "<s>", "</s>").
TEST_F(TokenizerTok512, FromGgufStylePieces) {
  const std::string bytes = read_file(bin_);
  std::vector<std::string> pieces;
  std::vector<float> scores;
  for (size_t off = 4; off < bytes.size();) {
    float score;
    int32_t len;
    std::memcpy(&score, bytes.data() + off, 4);
    std::memcpy(&len, bytes.data() + off + 4, 4);
    std::string p = bytes.substr(off + 8, static_cast<size_t>(len));
    for (size_t at = p.find(' '); at != std::string::npos; at = p.find(' ', at + 3)) p.replace(at, 1, "\xE2\x96\x81");
    pieces.push_back(p);
    scores.push_back(score);
    off += 8 + static_cast<size_t>(len);
  }
  ASSERT_EQ(pieces.size(), 512u);
  EXPECT_EQ(pieces[403], "\xE2\x96\x81Once");
  pieces[1] = "<s>", pieces[2] = "</s>";
  const auto g = make_llama2c_tokenizer(pieces, scores, "stories260K.gguf");
  for (const std::string& s : kShortTexts) {
    EXPECT_EQ(g->encode(s), l2c_->encode(s)) << s;
    EXPECT_EQ(g->decode(g->encode(s)), s);
  }
}

TEST_F(TokenizerTok512, LoadTokenizerPicksByName) {
  EXPECT_EQ(load_tokenizer(bin_)->kind(), "llama2c");
  EXPECT_EQ(load_tokenizer(model_)->kind(), "sentencepiece");
  TempDir dir;  // other names: by content
  pare_test::write_bytes(dir.file("tok"), read_file(model_));
  EXPECT_EQ(load_tokenizer(dir.file("tok"))->kind(), "sentencepiece");
  pare_test::write_bytes(dir.file("tokenizer.bin"), read_file(bin_));
  EXPECT_EQ(load_tokenizer(dir.path())->kind(), "llama2c");
}

TEST_F(TokenizerTok512, TruncatedRealFileNamesOffset) {
  TempDir dir;
  const std::string cut = dir.file("cut.bin");
  pare_test::write_bytes(cut, read_file(bin_).substr(0, 3000));
  EXPECT_INPUT_ERROR(load_llama2c_tokenizer(cut), AllOf(HasSubstr(cut), HasSubstr("truncated at byte offset")));
}

// ---------------------------------------------------------------------------------------------
// llama2.c on a hand-made vocabulary (no shared data needed)

// <unk>, BOS, EOS, <0x00>..<0xFF> (ids 3..258), then the given pieces.
std::string llama2c_bin(const std::vector<std::pair<std::string, float>>& extra) {
  std::vector<std::pair<std::string, float>> all = {{"<unk>", 0.f}, {"\n<s>\n", 0.f}, {"\n</s>\n", 0.f}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    all.emplace_back(name, 0.f);
  }
  all.insert(all.end(), extra.begin(), extra.end());
  int32_t max_len = 0;
  for (const auto& e : all) max_len = std::max<int32_t>(max_len, static_cast<int32_t>(e.first.size()));
  std::string out(reinterpret_cast<const char*>(&max_len), 4);
  for (const auto& [piece, score] : all) {
    const auto len = static_cast<int32_t>(piece.size());
    out.append(reinterpret_cast<const char*>(&score), 4);
    out.append(reinterpret_cast<const char*>(&len), 4);
    out += piece;
  }
  return out;
}

TEST(Tokenizer, Llama2cHandMadeMergesTiesAndByteFallback) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.bin");
  // ids: " " 259, "a" 260, "b" 261, " a" 262 (-1), "ab" 263 (-1), "ba" 264 (0.5), "bab" 265 (-3)
  pare_test::write_bytes(path, llama2c_bin({{" ", -10.f}, {"a", -10.f}, {"b", -10.f}, {" a", -1.f},
                                            {"ab", -1.f}, {"ba", 0.5f}, {"bab", -3.f}}));
  const auto t = load_llama2c_tokenizer(path);
  EXPECT_EQ(t->vocab_size(), 266);
  // " ab": " a" and "ab" tie at -1: the leftmost pair merges (run.c's strict '>'), leaving "b".
  EXPECT_EQ(t->encode("ab"), (Ids{262, 261}));
  // " bab": "ba" (0.5) first at the leftmost place -> " ", "ba", "b"; then "bab" (-3).
  EXPECT_EQ(t->encode("bab"), (Ids{259, 265}));
  // " aba": pairs (" ","a") -1, ("a","b") -1, ("b","a") 0.5: "ba" merges first -> " ", "a", "ba";
  // then " a" (-1) -> " a", "ba" ("aba" and " aba" are not pieces).
  EXPECT_EQ(t->encode("aba"), (Ids{262, 264}));
  // "é" (C3 A9) is not a piece: byte fallback 0xC3 + 3 = 198, 0xA9 + 3 = 172.
  EXPECT_EQ(t->encode("\xC3\xA9"), (Ids{259, 198, 172}));
  EXPECT_EQ(t->decode({259, 198, 172}), "\xC3\xA9");
  EXPECT_EQ(t->decode(t->encode("ab ba\n")), "ab ba\n");
  EXPECT_EQ(t->decode_piece(1, 262), "a");
  EXPECT_EQ(t->decode_piece(260, 262), " a");
  EXPECT_INPUT_ERROR(t->decode({266}), AllOf(HasSubstr(path), HasSubstr("266")));
  EXPECT_INPUT_ERROR(t->decode({-1}), HasSubstr("-1"));
}

TEST(Tokenizer, Llama2cTruncatedAndBadFiles) {
  TempDir dir;
  const std::string good = llama2c_bin({{" ", -1.f}});
  const std::string cut = dir.file("cut.bin");
  // 4-byte header; token 0 "<unk>": 8 + 5 bytes (ends at 17); token 1 starts at byte offset 17
  // and needs 8 bytes; cut the file 6 bytes later.
  pare_test::write_bytes(cut, good.substr(0, 23));
  EXPECT_INPUT_ERROR(load_llama2c_tokenizer(cut),
                     AllOf(HasSubstr(cut), HasSubstr("truncated at byte offset 17"), HasSubstr("token 1")));
  // Token 1's length field (offset 21) is complete, its 5 bytes are not.
  pare_test::write_bytes(cut, good.substr(0, 27));
  EXPECT_INPUT_ERROR(load_llama2c_tokenizer(cut), HasSubstr("truncated at byte offset 25"));
  pare_test::write_bytes(cut, good.substr(0, 2));
  EXPECT_INPUT_ERROR(load_llama2c_tokenizer(cut), AllOf(HasSubstr(cut), HasSubstr("byte offset 0")));
  // A negative length at byte offset 8 (token 0's length field).
  std::string bad = good;
  const int32_t neg = -5;
  std::memcpy(bad.data() + 8, &neg, 4);
  pare_test::write_bytes(cut, bad);
  EXPECT_INPUT_ERROR(load_llama2c_tokenizer(cut), AllOf(HasSubstr("byte offset 8"), HasSubstr("-5")));
  const std::string missing = dir.file("missing.bin");
  EXPECT_INPUT_ERROR(load_llama2c_tokenizer(missing), HasSubstr(missing));
  EXPECT_INPUT_ERROR(load_tokenizer(missing), HasSubstr(missing));
  // A vocabulary too small for byte fallback.
  const auto tiny = make_llama2c_tokenizer({"<unk>", "<s>", "</s>", " "}, {0, 0, 0, 0}, "tiny-vocab");
  EXPECT_INPUT_ERROR(tiny->encode("x"), AllOf(HasSubstr("tiny-vocab"), HasSubstr("0x78")));
  EXPECT_INPUT_ERROR(make_llama2c_tokenizer({"a", "b", "c"}, {0, 0}, "src"), HasSubstr("src"));
}

TEST(Tokenizer, SentencePieceLoadFailureNamesFileAndStatus) {
  TempDir dir;
  const std::string path = dir.file("broken.model");
  pare_test::write_bytes(path, "this is not a sentencepiece model");
  EXPECT_INPUT_ERROR(load_sentencepiece(path), AllOf(HasSubstr(path), HasSubstr("SentencePiece")));
  EXPECT_INPUT_ERROR(load_tokenizer(path), HasSubstr(path));
  const std::string missing = dir.file("missing.model");
  EXPECT_INPUT_ERROR(load_sentencepiece(missing), HasSubstr(missing));
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte-level BPE

// Chunks from Python: regex.findall(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", s)
TEST(Tokenizer, Gpt2PretokenizeMatchesPythonRegex) {
  using V = std::vector<std::string>;
  EXPECT_EQ(gpt2_pretokenize("Hello world's 42 cats!\n\n  and   more  "),
            (V{"Hello", " world", "'s", " 42", " cats", "!", "\n\n ", " and", "  ", " more", "  "}));
  EXPECT_EQ(gpt2_pretokenize("I'm LL'S 'quoted' x''s?'ve don't"),
            (V{"I", "'m", " LL", "'", "S", " '", "quoted", "'", " x", "''", "s", "?'", "ve", " don", "'t"}));
  EXPECT_EQ(gpt2_pretokenize("tab\tsep\r\nline \n"), (V{"tab", "\t", "sep", "\r", "\n", "line", " \n"}));
  // café naïve 3½ Ω≈ω × Жж
  EXPECT_EQ(gpt2_pretokenize("caf\u00e9 na\u00efve 3\u00bd \u03a9\u2248\u03c9 \u00d7 \u0416\u0436"),
            (V{"caf\u00e9", " na\u00efve", " 3\u00bd", " \u03a9", "\u2248", "\u03c9", " \u00d7", " \u0416\u0436"}));
  // 日本語のテキスト、です。 2024年
  EXPECT_EQ(gpt2_pretokenize("\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u3067\u3059\u3002 2024\u5e74"),
            (V{"\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u3001", "\u3067\u3059", "\u3002", " 2024",
               "\u5e74"}));
  EXPECT_EQ(gpt2_pretokenize(" \u00a0x\u2003 y"), (V{" ", "\u00a0", "x", "\u2003", " y"}));
  EXPECT_EQ(gpt2_pretokenize("a\u0301b e\u0301"), (V{"a", "\u0301", "b", " e", "\u0301"}));
  EXPECT_EQ(gpt2_pretokenize("   "), (V{"   "}));
  EXPECT_EQ(gpt2_pretokenize("x "), (V{"x", " "}));
  EXPECT_EQ(gpt2_pretokenize("emoji \U0001F600\U0001F600 ok"), (V{"emoji", " \U0001F600\U0001F600", " ok"}));
  EXPECT_EQ(gpt2_pretokenize(""), V{});
}

// tests/fixtures/tokenizer/gpt2_tiny: 24 tokens, 12 merges (rank = line order). By hand:
//   "the"   t h e -> "t h" (r0) -> th e -> "th e" (r2)                        -> the 13
//   " cat"  Ġ c a t -> "a t" (r1) before "Ġ c" (r3) -> Ġ c at -> Ġc at -> "Ġc at" -> Ġcat 15
//   "'s"    ' s -> "' s" (r5)                                                -> 's 16
//   " 42"   Ġ 4 2 -> "Ġ 4" (r6) beats "4 2" (r7) -> Ġ4 2, no merge "Ġ4 2"    -> Ġ4 17, 2 9
//   " hats" Ġ h a t s -> at (r1), Ġh (r8), Ġhat (r9), Ġhats (r10)            -> Ġhats 21
//   "\n"    byte 0x0A is "Ċ" (U+010A) in GPT-2's byte-to-unicode table       -> Ċ 10
//   "aaa"   a a a -> "a a" (r11) merges every occurrence left to right        -> aa 22, a 5
void expect_tiny_gpt2(const Tokenizer& t) {
  EXPECT_EQ(t.kind(), "gpt2-bpe");
  EXPECT_EQ(t.vocab_size(), 24);
  EXPECT_EQ(t.bos_id(), 23);
  EXPECT_EQ(t.eos_id(), 23);
  const std::string text = "the cat's 42 hats\naaa";
  const Ids ids = t.encode(text);
  EXPECT_EQ(ids, (Ids{13, 15, 16, 17, 9, 21, 10, 22, 5}));
  EXPECT_EQ(t.decode(ids), text);
  EXPECT_EQ(stream_decode(t, ids), text);
  EXPECT_EQ(t.encode("42"), Ids{18});
  EXPECT_EQ(t.encode("the<|endoftext|>the"), (Ids{13, 23, 13}));
  EXPECT_EQ(t.decode({13, 23}), "the<|endoftext|>");
  EXPECT_EQ(t.decode_piece(13, 3), " ");
  EXPECT_EQ(t.encode(""), Ids{});
  EXPECT_INPUT_ERROR(t.encode("the x"), AllOf(HasSubstr("0x78"), HasSubstr("byte offset 4")));
  EXPECT_INPUT_ERROR(t.decode({24}), HasSubstr("24"));
}

TEST(Tokenizer, Gpt2VocabMergesHandDerived) {
  const std::string dir = fixture("tokenizer/gpt2_tiny");
  expect_tiny_gpt2(*load_gpt2_bpe(dir));
  expect_tiny_gpt2(*load_tokenizer(dir));
}

TEST(Tokenizer, Gpt2TokenizerJsonSameAsVocabMerges) {
  const std::string path = fixture("tokenizer/gpt2_tiny_hf/tokenizer.json");
  expect_tiny_gpt2(*load_gpt2_bpe(path));
  expect_tiny_gpt2(*load_tokenizer(path));
  expect_tiny_gpt2(*load_tokenizer(fixture("tokenizer/gpt2_tiny_hf")));
}

// Variants of the tokenizer.json: merges as pairs, add_prefix_space, refused options.
TEST(Tokenizer, Gpt2TokenizerJsonVariantsAndErrors) {
  const std::string src = fixture("tokenizer/gpt2_tiny_hf/tokenizer.json");
  const nlohmann::json base = nlohmann::json::parse(read_file(src));
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  const auto write = [&](const nlohmann::json& j) { pare_test::write_bytes(path, j.dump()); };

  nlohmann::json pairs = base;
  pairs["model"]["merges"] = nlohmann::json::array();
  for (const auto& m : base["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    pairs["model"]["merges"].push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  write(pairs);
  expect_tiny_gpt2(*load_gpt2_bpe(path));

  nlohmann::json prefix = base;
  prefix["pre_tokenizer"]["add_prefix_space"] = true;
  write(prefix);
  EXPECT_EQ(load_gpt2_bpe(path)->encode("the"), (Ids{3, 13}));  // " the": Ġ t h e -> Ġ th e -> Ġ the

  nlohmann::json norm = base;
  norm["normalizer"] = {{"type", "NFC"}};
  write(norm);
  EXPECT_INPUT_ERROR(load_gpt2_bpe(path), AllOf(HasSubstr(path), HasSubstr("normalizer")));

  nlohmann::json wp = base;
  wp["model"]["type"] = "WordPiece";
  write(wp);
  EXPECT_INPUT_ERROR(load_tokenizer(path), AllOf(HasSubstr(path), HasSubstr("model.type"), HasSubstr("WordPiece")));

  nlohmann::json split = base;
  split["pre_tokenizer"] = {{"type", "Split"}};
  write(split);
  EXPECT_INPUT_ERROR(load_gpt2_bpe(path), AllOf(HasSubstr("pre_tokenizer.type"), HasSubstr("Split")));

  nlohmann::json bad_merge = base;
  bad_merge["model"]["merges"].push_back("q u");
  write(bad_merge);
  EXPECT_INPUT_ERROR(load_gpt2_bpe(path), AllOf(HasSubstr("model.merges[12]"), HasSubstr("'q'")));

  nlohmann::json bad_vocab = base;
  bad_vocab["model"]["vocab"]["t"] = "zero";
  write(bad_vocab);
  EXPECT_INPUT_ERROR(load_gpt2_bpe(path), AllOf(HasSubstr("model.vocab"), HasSubstr("'t'")));

  pare_test::write_bytes(path, "{\"model\": ");
  EXPECT_INPUT_ERROR(load_gpt2_bpe(path), AllOf(HasSubstr(path), HasSubstr("invalid JSON")));
}

TEST(Tokenizer, Gpt2MergesTxtErrorsNameLine) {
  TempDir dir;
  pare_test::write_bytes(dir.file("vocab.json"), read_file(fixture("tokenizer/gpt2_tiny/vocab.json")));
  pare_test::write_bytes(dir.file("merges.txt"), "#version: 0.2\nt h\nonlyone\n");
  EXPECT_INPUT_ERROR(load_gpt2_bpe(dir.path()), AllOf(HasSubstr("merges.txt:3"), HasSubstr("onlyone")));
  std::filesystem::remove(dir.file("merges.txt"));
  EXPECT_INPUT_ERROR(load_gpt2_bpe(dir.path()), HasSubstr("merges.txt"));
}

// ---------------------------------------------------------------------------------------------
// Character and byte level

TEST(Tokenizer, CharTinyShakespeare) {
  SHARED_OR_SKIP(path, "tinyshakespeare/input.txt");
  const std::string text = read_file(path);
  const auto t = build_char_tokenizer(text);
  EXPECT_EQ(t->kind(), "char");
  EXPECT_EQ(t->vocab_size(), 65);
  EXPECT_EQ(t->bos_id(), -1);
  EXPECT_EQ(t->encode("hii there"), (Ids{46, 47, 47, 1, 58, 46, 43, 56, 43}));
  const Ids ids = t->encode(text);
  EXPECT_EQ(ids.size(), text.size());  // all ASCII
  EXPECT_EQ(t->decode(ids), text);

  TempDir dir;
  const std::string saved = dir.file("tokenizer.json");
  save_char_tokenizer(*t, saved);
  const auto back = load_tokenizer(saved);
  EXPECT_EQ(back->kind(), "char");
  EXPECT_EQ(back->vocab_size(), 65);
  EXPECT_EQ(back->encode(text), ids);
  EXPECT_EQ(load_tokenizer(dir.path())->vocab_size(), 65);  // a folder with tokenizer.json
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()), 1);  // no temp file left

  // '=' (U+003D) is not in Tiny Shakespeare.
  EXPECT_INPUT_ERROR(t->encode("a = b"), AllOf(HasSubstr("U+003D '='"), HasSubstr("byte offset 2")));
  EXPECT_INPUT_ERROR(back->encode("ok\n\xC3\xA9"), AllOf(HasSubstr(saved), HasSubstr("U+00E9"), HasSubstr("byte offset 3")));
}

TEST(Tokenizer, CharFixtureAndErrors) {
  const std::string path = fixture("tokenizer/chars_abc.json");
  const auto t = load_tokenizer(path);
  // ["\n", " ", "a", "b", "c", "é"]: id = index.
  EXPECT_EQ(t->encode("cab \xC3\xA9\n"), (Ids{4, 2, 3, 1, 5, 0}));
  EXPECT_EQ(t->decode({4, 2, 3, 1, 5, 0}), "cab \xC3\xA9\n");
  EXPECT_INPUT_ERROR(t->encode("abd"), AllOf(HasSubstr(path), HasSubstr("U+0064 'd'"), HasSubstr("byte offset 2")));
  EXPECT_INPUT_ERROR(t->encode("a\xFF"), AllOf(HasSubstr("invalid UTF-8"), HasSubstr("byte offset 1")));
  EXPECT_INPUT_ERROR(t->decode({6}), HasSubstr("6"));
  // build: sorted by codepoint, multi-byte characters whole.
  const auto b = build_char_tokenizer("\xC3\xA9" "ba\n\xC3\xA9");
  EXPECT_EQ(b->vocab_size(), 4);
  EXPECT_EQ(b->encode("\nab\xC3\xA9"), (Ids{0, 1, 2, 3}));
  EXPECT_INPUT_ERROR(build_char_tokenizer("ab\xC3"), HasSubstr("byte offset 2"));

  TempDir dir;
  const std::string bad = dir.file("chars.json");
  pare_test::write_bytes(bad, R"({"kind": "char", "chars": ["a", "bc"]})");
  EXPECT_INPUT_ERROR(load_tokenizer(bad), AllOf(HasSubstr(bad), HasSubstr("chars[1]")));
  pare_test::write_bytes(bad, R"({"kind": "char", "chars": ["a", "b", "a"]})");
  EXPECT_INPUT_ERROR(load_tokenizer(bad), AllOf(HasSubstr("chars[2]"), HasSubstr("duplicate")));
  pare_test::write_bytes(bad, R"({"kind": "word", "chars": ["a"]})");
  EXPECT_INPUT_ERROR(load_tokenizer(bad), AllOf(HasSubstr(bad), HasSubstr("kind")));
  pare_test::write_bytes(bad, R"({"kind": "char"})");
  EXPECT_INPUT_ERROR(load_tokenizer(bad), HasSubstr("chars"));
  EXPECT_INPUT_ERROR(save_char_tokenizer(*make_byte_tokenizer(), dir.file("x.json")), HasSubstr("byte"));
}

TEST(Tokenizer, ByteRoundTripUtf8) {
  const auto t = make_byte_tokenizer();
  EXPECT_EQ(t->kind(), "byte");
  EXPECT_EQ(t->vocab_size(), 256);
  EXPECT_EQ(t->eos_id(), -1);
  const std::string text = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x80\x94 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\n";
  const Ids ids = t->encode(text);
  EXPECT_EQ(ids.size(), text.size());
  EXPECT_THAT(t->encode("A\xC3\xA9"), ElementsAre(65, 0xC3, 0xA9));
  EXPECT_EQ(t->decode(ids), text);
  EXPECT_EQ(stream_decode(*t, ids), text);
  EXPECT_INPUT_ERROR(t->decode({256}), HasSubstr("256"));
}

// ---------------------------------------------------------------------------------------------
// Vocabulary check and dispatch errors

TEST(Tokenizer, CheckVocabNamesBothSizesAndSource) {
  const auto t = make_byte_tokenizer();
  check_tokenizer_vocab(*t, 256, "model-a");
  check_tokenizer_vocab(*t, 512, "model-a", /*allow_smaller=*/true);
  EXPECT_INPUT_ERROR(check_tokenizer_vocab(*t, 512, "models/lm/config.json"),
                     AllOf(HasSubstr("models/lm/config.json: tokenizer has 256 tokens but the model's vocab_size is 512")));
  EXPECT_INPUT_ERROR(check_tokenizer_vocab(*t, 100, "src", true), AllOf(HasSubstr("256"), HasSubstr("100")));
}

TEST(Tokenizer, LoadTokenizerErrors) {
  TempDir dir;
  EXPECT_INPUT_ERROR(load_tokenizer(dir.path()), AllOf(HasSubstr(dir.path()), HasSubstr("tokenizer.json")));
  const std::string other = dir.file("x.json");
  pare_test::write_bytes(other, R"({"hello": 1})");
  EXPECT_INPUT_ERROR(load_tokenizer(other), AllOf(HasSubstr(other), HasSubstr("model")));
}

}  // namespace
}  // namespace pare
