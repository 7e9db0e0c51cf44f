// WordPiece tokenizer and vocabulary builder (src/data/wordpiece.h). Reference values come from
// outside this code:
//   * tokenizations against tests/fixtures/wordpiece/vocab_uncased.txt (ids = line numbers from 0,
//     listed below) and small in-test vocabularies: worked out by hand from google-research/bert
//     tokenization.py (BasicTokenizer, then WordpieceTokenizer's greedy longest match);
//     "unaffable" -> un ##aff ##able is the example of tokenization.py's docstring.
//   * Unicode facts: NFD('é') = e + U+0301, NFD('й') = и + U+0306 (both marks Mn), 'ł' and 'ß'
//     have no decomposition, Hangul '한' (U+D55C) = jamo U+1112 U+1161 U+11AB by Unicode's
//     arithmetic (S = 0xD55C - 0xAC00 = 10588 = 18·588 + 0·28 + 4); U+00A0 and U+3000 are Zs,
//     U+00AD and U+200B are Cf, U+000B is Cc; “ ” — … are punctuation (Pi, Pf, Pd, Po).
//   * builder merges on tiny corpora: worked by hand with score = freq(a, b) / (freq(a)·freq(b)).
//   * SST-2 (shared data, skipped when absent): the vocabulary and dev ids from an independent
//     Python transcription of tokenization.py and of the Hugging Face course's WordPiece trainer
//     (naive: recounts every pair at every merge), with the same tie rule:
//     tests/fixtures/wordpiece/make_reference.py.
#include "data/wordpiece.h"

#include <filesystem>

#include "base/fileio.h"
#include "test_util.h"

namespace pare {
namespace {

using pare_test::fixture;
using pare_test::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Ids = std::vector<int64_t>;
using Words = std::vector<std::string>;

// vocab_uncased.txt:
//   0 [PAD]  1 [UNK]  2 [CLS]  3 [SEP]  4 [MASK]  5 un  6 ##aff  7 ##able  8 hello  9 world
//   10 ,  11 !  12 don  13 '  14 t  15 cafe  16 the  17 cat  18 ##s  19 中  20 文  21 a  22 ##a
//   23 ab  24 c  25 .  26 naive  27 i  28 ##st  29 ##an  30 ##bul
WordPiece uncased() { return WordPiece::load(fixture("wordpiece/vocab_uncased.txt"), true); }

std::string read_vocab_lines() {
  return pare_test::read_bytes(fixture("wordpiece/vocab_uncased.txt"));
}

// ---------------------------------------------------------------------------------------------
// BasicTokenizer

TEST(WordPieceBasic, SplitsOnWhitespaceAndPunctuation) {
  EXPECT_EQ(bert_basic_tokenize("Hello, World!", true), (Words{"hello", ",", "world", "!"}));
  EXPECT_EQ(bert_basic_tokenize("Hello, World!", false), (Words{"Hello", ",", "World", "!"}));
  EXPECT_EQ(bert_basic_tokenize("don't", true), (Words{"don", "'", "t"}));
  // ASCII symbols count as punctuation ($ + ^ ` are Sc/Sm/Sk in Unicode).
  EXPECT_EQ(bert_basic_tokenize("$5+3^2`x", false),
            (Words{"$", "5", "+", "3", "^", "2", "`", "x"}));
  // Unicode punctuation: “ (Pi) ” (Pf) — (Pd) … (Po).
  EXPECT_EQ(bert_basic_tokenize("\u201Cyes\u201D\u2014no\u2026", false),
            (Words{"\u201C", "yes", "\u201D", "\u2014", "no", "\u2026"}));
  EXPECT_EQ(bert_basic_tokenize("  \t\n ", true), Words{});
  EXPECT_EQ(bert_basic_tokenize("", true), Words{});
}

TEST(WordPieceBasic, CleansControlAndWhitespace) {
  // \t \n \r, NBSP (Zs) and the ideographic space U+3000 (Zs) separate words.
  EXPECT_EQ(bert_basic_tokenize("a\tb\nc\rd\u00A0e\u3000f", false),
            (Words{"a", "b", "c", "d", "e", "f"}));
  // NUL, U+FFFD, soft hyphen and zero-width space (Cf) and vertical tab (Cc) are dropped, joining
  // their neighbours.
  EXPECT_EQ(bert_basic_tokenize(
                std::string("he\0l", 4) + "lo wor\u00ADld x\u200By p\xEF\xBF\xBDq r\x0Bs", false),
            (Words{"hello", "world", "xy", "pq", "rs"}));
  // Invalid UTF-8 bytes are dropped (decode("utf-8", "ignore")): a stray continuation byte 0x80, a
  // bad lead byte 0xFF, a truncated sequence E2 82 (octal escapes).
  EXPECT_EQ(bert_basic_tokenize("ab\200c d\377e f\342\202", false), (Words{"abc", "de", "f"}));
}

TEST(WordPieceBasic, PadsCjkIdeographs) {
  EXPECT_EQ(bert_basic_tokenize("ab\u4E2D\u6587c", true), (Words{"ab", "\u4E2D", "\u6587", "c"}));
  // Hiragana is not in BERT's CJK list: it stays inside the word.
  EXPECT_EQ(bert_basic_tokenize("\u3042\u3044", true), (Words{"\u3042\u3044"}));
}

TEST(WordPieceBasic, LowercasesAndStripsAccentsOnlyWhenUncased) {
  EXPECT_EQ(bert_basic_tokenize("Caf\u00E9 na\u00EFve \u00C0\u00C9\u00CE\u00D5\u00DC", true),
            (Words{"cafe", "naive", "aeiou"}));
  EXPECT_EQ(bert_basic_tokenize("Caf\u00E9 na\u00EFve", false), (Words{"Caf\u00E9", "na\u00EFve"}));
  // Decomposed input: the combining acute (Mn) is dropped when uncased, kept when cased.
  EXPECT_EQ(bert_basic_tokenize("Cafe\u0301", true), (Words{"cafe"}));
  EXPECT_EQ(bert_basic_tokenize("Cafe\u0301", false), (Words{"Cafe\u0301"}));
  // No canonical decomposition: ł and ß keep their shape (Ł lowercases to ł).
  EXPECT_EQ(bert_basic_tokenize("\u0141\u00F3d\u017A Stra\u00DFe", true),
            (Words{"\u0142odz", "stra\u00DFe"}));
  // Beyond Latin-1: Vietnamese ệ, Greek ά, Cyrillic Й (lowercased, then the breve dropped).
  EXPECT_EQ(
      bert_basic_tokenize("Vi\u1EC7t \u0386\u03B8\u03AE\u03BD\u03B1 \u0419\u043E\u0434", true),
      (Words{"viet", "\u03B1\u03B8\u03B7\u03BD\u03B1", "\u0438\u043E\u0434"}));
  // İ lowercases to i + U+0307, whose dot is then stripped.
  EXPECT_EQ(bert_basic_tokenize("\u0130stanbul", true), (Words{"istanbul"}));
  // Hangul syllables decompose into conjoining jamo.
  EXPECT_EQ(bert_basic_tokenize("\uD55C", true), (Words{"\u1112\u1161\u11AB"}));
  EXPECT_EQ(bert_basic_tokenize("\uD55C", false), (Words{"\uD55C"}));
}

TEST(WordPieceBasic, SpecialTokensInTextAreNotKeptWhole) {
  EXPECT_EQ(bert_basic_tokenize("[MASK] x", true), (Words{"[", "mask", "]", "x"}));
}

// ---------------------------------------------------------------------------------------------
// WordpieceTokenizer against vocab_uncased.txt

TEST(WordPiece, LoadsVocabTxt) {
  const WordPiece wp = uncased();
  EXPECT_EQ(wp.vocab_size(), 31);
  EXPECT_EQ(wp.pad_id(), 0);
  EXPECT_EQ(wp.unk_id(), 1);
  EXPECT_EQ(wp.cls_id(), 2);
  EXPECT_EQ(wp.sep_id(), 3);
  EXPECT_EQ(wp.mask_id(), 4);
  EXPECT_TRUE(wp.lowercase());
  EXPECT_EQ(wp.token(6), "##aff");
  EXPECT_EQ(wp.token(19), "\u4E2D");
  EXPECT_EQ(wp.id("hello"), 8);
  EXPECT_EQ(wp.id("Hello"), -1);
  EXPECT_INPUT_ERROR(wp.token(31), AllOf(HasSubstr("vocab_uncased.txt"), HasSubstr("31")));
  EXPECT_INPUT_ERROR(wp.token(-1), HasSubstr("-1"));
}

TEST(WordPiece, GreedyLongestMatchFirst) {
  const WordPiece wp = uncased();
  EXPECT_EQ(wp.tokenize("unaffable"), (Words{"un", "##aff", "##able"}));
  EXPECT_EQ(wp.encode("unaffable"), (Ids{5, 6, 7}));
  EXPECT_EQ(wp.encode("Hello, World!"), (Ids{8, 10, 9, 11}));
  EXPECT_EQ(wp.encode("don't"), (Ids{12, 13, 14}));
  EXPECT_EQ(wp.encode("Caf\u00E9"), (Ids{15}));
  EXPECT_EQ(wp.encode("cats"), (Ids{17, 18}));
  // "s" has no word-initial token: that word alone becomes [UNK].
  EXPECT_EQ(wp.tokenize("The cat's."), (Words{"the", "cat", "'", "[UNK]", "."}));
  // "ab" matches, then "##x" does not: the whole word is one [UNK], not ab + [UNK].
  EXPECT_EQ(wp.encode("abx ab"), (Ids{1, 23}));
  EXPECT_EQ(wp.encode("ab\u4E2D\u6587c"), (Ids{23, 19, 20, 24}));
  EXPECT_EQ(wp.encode("\u0130stanbul"), (Ids{27, 28, 29, 30}));
  EXPECT_EQ(wp.encode("NA\u00CFVE."), (Ids{26, 25}));
  EXPECT_EQ(wp.encode(""), Ids{});
}

TEST(WordPiece, WordsOfMoreThan100CharactersAreUnknown) {
  const WordPiece wp = uncased();
  Ids hundred{21};
  hundred.insert(hundred.end(), 99, 22);  // a ##a ##a ... (the longest token "a"/"##a" is one char)
  EXPECT_EQ(wp.encode(std::string(100, 'a')), hundred);
  EXPECT_EQ(wp.encode(std::string(101, 'a')), (Ids{1}));
  EXPECT_EQ(wp.encode(std::string(101, 'a') + " a"), (Ids{1, 21}));
}

TEST(WordPiece, EncodeForClassification) {
  const WordPiece wp = uncased();
  bool truncated = true;
  EXPECT_EQ(wp.encode_for_classification("Hello, World!", 6, &truncated),
            (Ids{2, 8, 10, 9, 11, 3}));
  EXPECT_FALSE(truncated);
  EXPECT_EQ(wp.encode_for_classification("Hello, World!", 512, &truncated),
            (Ids{2, 8, 10, 9, 11, 3}));
  EXPECT_FALSE(truncated);
  EXPECT_EQ(wp.encode_for_classification("Hello, World!", 5, &truncated), (Ids{2, 8, 10, 9, 3}));
  EXPECT_TRUE(truncated);
  EXPECT_EQ(wp.encode_for_classification("Hello, World!", 2, &truncated), (Ids{2, 3}));
  EXPECT_TRUE(truncated);
  EXPECT_EQ(wp.encode_for_classification("", 2, &truncated), (Ids{2, 3}));
  EXPECT_FALSE(truncated);
  EXPECT_EQ(wp.encode_for_classification("unaffable", 4, nullptr), (Ids{2, 5, 6, 3}));
  EXPECT_INPUT_ERROR(wp.encode_for_classification("x", 1, &truncated),
                     AllOf(HasSubstr("max_len"), HasSubstr("got 1")));
}

TEST(WordPiece, Decode) {
  const WordPiece wp = uncased();
  EXPECT_EQ(wp.decode({2, 5, 6, 7, 3}), "[CLS] unaffable [SEP]");
  EXPECT_EQ(wp.decode(wp.encode("Hello, World!")), "hello , world !");
  EXPECT_EQ(wp.decode(wp.encode("cats unaffable")), "cats unaffable");
  EXPECT_EQ(wp.decode({6, 7}), "##affable");  // a leading "##" piece has nothing to glue to
  EXPECT_EQ(wp.decode({}), "");
  EXPECT_INPUT_ERROR(wp.decode({5, 99}), AllOf(HasSubstr("99"), HasSubstr("[0, 31)")));
}

TEST(WordPiece, CasedAndUncased) {
  const Words tokens{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",    "Hello", "hello",
                     "World", "world", ",",     "!",     "Caf\u00E9", "cafe"};
  const WordPiece cased = WordPiece::from_tokens(tokens, false, "cased test vocab");
  const WordPiece lower = WordPiece::from_tokens(tokens, true, "uncased test vocab");
  EXPECT_FALSE(cased.lowercase());
  EXPECT_EQ(cased.encode("Hello, World! Caf\u00E9"), (Ids{5, 9, 7, 10, 11}));
  EXPECT_EQ(lower.encode("Hello, World! Caf\u00E9"), (Ids{6, 9, 8, 10, 12}));
  EXPECT_EQ(cased.encode("hello CAFE"), (Ids{6, 1}));
}

TEST(WordPiece, LineEndingsAndByteOrderMark) {
  TempDir dir;
  std::string crlf = "\xEF\xBB\xBF";  // BOM, then \r\n line ends and no newline after the last
  const std::string lf = read_vocab_lines();
  for (char c : lf.substr(0, lf.size() - 1))
    crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  pare_test::write_bytes(dir.file("vocab.txt"), crlf);
  const WordPiece wp = WordPiece::load(dir.file("vocab.txt"), true);
  EXPECT_EQ(wp.vocab_size(), 31);
  EXPECT_EQ(wp.token(0), "[PAD]");
  EXPECT_EQ(wp.token(30), "##bul");
  EXPECT_EQ(wp.encode("unaffable"), (Ids{5, 6, 7}));
}

TEST(WordPiece, SaveLoadRoundTrip) {
  TempDir dir;
  const WordPiece wp = uncased();
  wp.save(dir.file("out.txt"));
  EXPECT_EQ(pare_test::read_bytes(dir.file("out.txt")), read_vocab_lines());
  const WordPiece back = WordPiece::load(dir.file("out.txt"), true);
  EXPECT_EQ(back.encode("Hello, World! unaffable"), wp.encode("Hello, World! unaffable"));
  EXPECT_INPUT_ERROR(wp.save(dir.file("no/such/folder/vocab.txt")), HasSubstr("no/such/folder"));
}

// Writes `lines` (each followed by "\n") to DIR/vocab.txt and returns the load() error message.
std::string load_error(const TempDir& dir, const Words& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  pare_test::write_bytes(dir.file("vocab.txt"), s);
  return pare_test::input_error_message([&] { WordPiece::load(dir.file("vocab.txt"), true); });
}

TEST(WordPiece, BadVocabFiles) {
  TempDir dir;
  const Words specials{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (size_t k = 0; k < specials.size(); ++k) {
    Words lines = specials;
    lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(k));
    lines.push_back("hello");
    const std::string msg = load_error(dir, lines);
    EXPECT_THAT(msg, AllOf(HasSubstr(dir.file("vocab.txt")), HasSubstr("no " + specials[k])));
  }
  EXPECT_THAT(load_error(dir, {"hello"}), HasSubstr("no [PAD], [UNK], [CLS], [SEP], [MASK]"));
  // Duplicate: line 8 repeats line 7 ("hello").
  Words dup = specials;
  dup.insert(dup.end(), {"x", "hello", "hello"});
  EXPECT_THAT(load_error(dir, dup),
              AllOf(HasSubstr(dir.file("vocab.txt") + ":8:"), HasSubstr("'hello' repeats line 7")));
  Words empty = specials;
  empty.insert(empty.begin() + 2, "");
  EXPECT_THAT(load_error(dir, empty),
              AllOf(HasSubstr(dir.file("vocab.txt") + ":3:"), HasSubstr("empty token")));
  Words bad_utf8 = specials;
  bad_utf8.push_back("ab\xFF");
  EXPECT_THAT(load_error(dir, bad_utf8),
              AllOf(HasSubstr(dir.file("vocab.txt") + ":6:"), HasSubstr("not valid UTF-8")));
  EXPECT_INPUT_ERROR(WordPiece::load(dir.file("missing.txt"), true), HasSubstr("missing.txt"));
  // from_tokens names the source and the index.
  Words from = specials;
  from.push_back("");
  EXPECT_INPUT_ERROR(WordPiece::from_tokens(from, true, "my tokens"),
                     AllOf(HasSubstr("my tokens: token 5"), HasSubstr("empty token")));
  from.back() = "a\nb";
  EXPECT_INPUT_ERROR(WordPiece::from_tokens(from, true, "my tokens"),
                     AllOf(HasSubstr("my tokens: token 5"), HasSubstr("line break")));
}

// ---------------------------------------------------------------------------------------------
// build_wordpiece_vocab

// Words (lowercased) ab ×4, ac ×4, de ×1, "," ×1. Alphabet sorted by bytes ('#' 0x23 < ',' 0x2C):
// ##a ##b ##c ##d ##e , a b c d e = ids 5-15 (every letter in both forms, ',' only word-initial).
// Frequencies: a 8, ##b 4, ##c 4, d 1, ##e 1. Scores: (a, ##b) = 4/(8·4) = 0.125, (a, ##c) = 0.125,
// (d, ##e) = 1/(1·1) = 1: "de" (16) first although it is the rarest pair. Then the tie between
// (a, ##b) and (a, ##c) (same score and count) goes to the smaller id of the right token: "ab"
// (17). Now a 4, ##c 4: (a, ##c) = 4/16 = 0.25: "ac" (18). No pair is left.
const Words kTinyCorpus{"ab ac ab", "AC de", "ab, ac ab ac"};

TEST(WordPieceBuild, MergesByScoreByHand) {
  const WordPiece wp = build_wordpiece_vocab(kTinyCorpus, 100, true);
  std::vector<std::string> tokens;
  for (int64_t i = 0; i < wp.vocab_size(); ++i) tokens.push_back(wp.token(i));
  EXPECT_EQ(tokens, (Words{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "##a", "##b", "##c", "##d",
                           "##e", ",", "a", "b", "c", "d", "e", "de", "ab", "ac"}));
  EXPECT_TRUE(wp.lowercase());
  EXPECT_EQ(wp.encode("ab ac de, e"), (Ids{17, 18, 16, 10, 15}));
  // A size limit stops after the merges that fit: no "ac".
  const WordPiece small = build_wordpiece_vocab(kTinyCorpus, 18, true);
  EXPECT_EQ(small.vocab_size(), 18);
  EXPECT_EQ(small.token(17), "ab");
  EXPECT_EQ(small.tokenize("ac"), (Words{"a", "##c"}));
}

TEST(WordPieceBuild, SpecialsAlphabetAndLimits) {
  const Words texts{"The cat sat on the mat.", "The dog ate the cat's food!", "the the the"};
  const WordPiece wp = build_wordpiece_vocab(texts, 1000, true);
  EXPECT_EQ(wp.token(0), "[PAD]");
  EXPECT_EQ(wp.token(1), "[UNK]");
  EXPECT_EQ(wp.token(2), "[CLS]");
  EXPECT_EQ(wp.token(3), "[SEP]");
  EXPECT_EQ(wp.token(4), "[MASK]");
  EXPECT_EQ(wp.pad_id(), 0);
  EXPECT_EQ(wp.mask_id(), 4);
  EXPECT_LE(wp.vocab_size(), 1000);
  // Every character in both forms (punctuation only word-initial), so any word of them encodes.
  for (const char* t : {"t", "##t", "h", "##h", "'", "!", "."}) EXPECT_GE(wp.id(t), 0) << t;
  for (const char* t : {"##'", "##!", "##.", "T", "##T"}) EXPECT_EQ(wp.id(t), -1) << t;
  EXPECT_EQ(wp.tokenize("tac"), (Words{"t", "##a", "##c"}));
  // With room for every merge, each training word ends as one token.
  for (const char* w : {"the", "cat", "sat", "on", "mat", "dog", "ate", "food"})
    EXPECT_EQ(wp.tokenize(w), (Words{w})) << w;
  for (const auto& text : texts) {
    for (int64_t id : wp.encode(text)) EXPECT_NE(id, wp.unk_id()) << text;
  }
  // Deterministic.
  const WordPiece again = build_wordpiece_vocab(texts, 1000, true);
  ASSERT_EQ(again.vocab_size(), wp.vocab_size());
  for (int64_t i = 0; i < wp.vocab_size(); ++i) EXPECT_EQ(again.token(i), wp.token(i));
}

TEST(WordPieceBuild, VocabSizeIsRespected) {
  const Words texts{"the quick brown fox jumps over the lazy dog",
                    "pack my box with five dozen jugs"};
  const WordPiece all = build_wordpiece_vocab(texts, 100000, true);
  for (int64_t size : {int64_t{60}, int64_t{61}, int64_t{70}, all.vocab_size()}) {
    const WordPiece wp = build_wordpiece_vocab(texts, size, true);
    EXPECT_EQ(wp.vocab_size(), size);
    for (const auto& text : texts)
      for (int64_t id : wp.encode(text)) EXPECT_NE(id, wp.unk_id()) << size << ": " << text;
    // A smaller budget gives a prefix of the larger vocabulary.
    for (int64_t i = 0; i < size; ++i) EXPECT_EQ(wp.token(i), all.token(i));
  }
}

TEST(WordPieceBuild, RareCharactersAndErrors) {
  // Characters: a ×6, b ×2, z ×1. With min_char_frequency 2, z is out of the alphabet and "aaz"
  // is left out of training; it encodes to [UNK].
  const Words texts{"aab aab aaz"};
  const WordPiece wp = build_wordpiece_vocab(texts, 50, false, 2);
  EXPECT_EQ(wp.id("z"), -1);
  EXPECT_EQ(wp.id("##z"), -1);
  EXPECT_EQ(wp.encode("aaz"), (Ids{wp.unk_id()}));
  EXPECT_EQ(wp.tokenize("aab"), (Words{"aab"}));
  EXPECT_FALSE(wp.lowercase());
  // 5 specials + 4 character tokens (a ##a b ##b) = 9.
  EXPECT_INPUT_ERROR(build_wordpiece_vocab(texts, 8, false, 2),
                     AllOf(HasSubstr("vocab_size 8"), HasSubstr("4 character tokens")));
  EXPECT_EQ(build_wordpiece_vocab(texts, 9, false, 2).vocab_size(), 9);
  EXPECT_INPUT_ERROR(build_wordpiece_vocab(texts, 50, false, 0), HasSubstr("min_char_frequency"));
}

TEST(WordPieceBuild, SaveLoadRoundTrip) {
  TempDir dir;
  const Words texts{"Hello, World! The unaffable cat sat on the mat.",
                    "Don't stop; caf\u00E9 \u4E2D\u6587."};
  const WordPiece wp = build_wordpiece_vocab(texts, 60, true);
  wp.save(dir.file("vocab.txt"));
  const WordPiece back = WordPiece::load(dir.file("vocab.txt"), true);
  ASSERT_EQ(back.vocab_size(), wp.vocab_size());
  for (int64_t i = 0; i < wp.vocab_size(); ++i) EXPECT_EQ(back.token(i), wp.token(i));
  for (const auto& t : texts) EXPECT_EQ(back.encode(t), wp.encode(t));
}

// ---------------------------------------------------------------------------------------------
// SST-2: builder and tokenizer against the independent Python reference

std::string shared_data(const std::string& rel) {
  const char* e = std::getenv("PARE_SHARED_DATA");
  const std::string p = std::string(e && *e ? e : "") + "/" + rel;
  return e && *e && std::filesystem::exists(p) ? p : "";
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// FNV-1a 64 of the bytes.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

TEST(WordPieceBuild, Sst2MatchesPythonReference) {
  const std::string train = shared_data("sst2/stsa.binary.train");
  const std::string dev = shared_data("sst2/stsa.binary.dev");
  if (train.empty() || dev.empty()) GTEST_SKIP() << "$PARE_SHARED_DATA/sst2 not found";
  const WordPiece wp = build_wordpiece_vocab(lines_of(train), 2000, true);
  TempDir dir;
  wp.save(dir.file("vocab.txt"));
  const std::string bytes = pare_test::read_bytes(dir.file("vocab.txt"));
  EXPECT_EQ(wp.vocab_size(), 2000);
  EXPECT_EQ(bytes.size(), 13615u);
  EXPECT_EQ(fnv1a(bytes), 0x693104ecc464823eull);
  const auto lines = lines_of(dev);
  ASSERT_GE(lines.size(), 101u);
  // Lines 1, 3 and 101 of the dev file, ids from the Python reference.
  EXPECT_EQ(wp.tokenize(lines[0]), (Words{"0", "on", "##e", "long", "s", "##t", "##r", "##ing",
                                          "of", "c", "##l", "##i", "##ch", "##e", "##s", "."}));
  EXPECT_EQ(wp.encode(lines[0]),
            (Ids{53, 1745, 21, 1215, 87, 36, 34, 541, 279, 71, 28, 25, 420, 21, 35, 51}));
  EXPECT_EQ(
      wp.encode(lines[2]),
      (Ids{53, 79, 50,   211, 288, 28, 31, 25, 36, 35, 1755, 87, 37, 18,  35, 36, 17, 30, 36, 25,
           17, 28, 1471, 21,  19,  36, 25, 38, 21, 74, 21,   17, 34, 279, 82, 37, 19, 28, 21, 17,
           34, 76, 31,   28,  31,  19, 17, 37, 35, 36, 1357, 75, 21, 30,  21, 34, 17, 36, 21, 410,
           21, 17, 32,   76,  31,  28, 28, 41, 39, 31, 31,   20, 88, 21,  30, 35, 25, 31, 30, 51}));
  EXPECT_EQ(wp.encode(lines[100]),
            (Ids{54,   77, 36, 46, 87,  69,  87, 19, 17, 36, 36, 21, 34, 1095, 31, 36, 407,
                 17,   25, 34, 49, 928, 373, 21, 30, 77, 36, 76, 25, 36, 35,   77, 36, 35,
                 1918, 34, 27, 77, 36,  46,  87, 70, 34, 25, 28, 28, 25, 17,   30, 36, 51}));
  EXPECT_EQ(wp.token(1999), "disapproval");
}

}  // namespace
}  // namespace pare
