// BERT's WordPiece tokenizer (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional
// Transformers for Language Understanding", sec. 3 and appendix A; reference implementation
// google-research/bert tokenization.py, as wrapped by Hugging Face BertTokenizer), and a builder of
// WordPiece vocabularies for models pare trains.
//
// Text -> ids in two steps, both over UTF-8 code points (a multi-byte character is never split):
//
// 1. bert_basic_tokenize (BasicTokenizer): invalid UTF-8 bytes are dropped, as tokenization.py's
//    convert_to_unicode does (bytes.decode("utf-8", "ignore"); the same as reading
//    each as U+FFFD, which _clean_text drops). Then _clean_text drops NUL, U+FFFD
//    and control characters (category Cc except \t \n \r, and Cf: soft hyphen, zero-width space,
//    BOM, bidi marks, ...) and turns whitespace (\t \n \r and category Zs) into a space; CJK
//    ideographs (BERT's block list: U+4E00-9FFF, U+3400-4DBF, U+F900-FAFF, U+20000-2CEAF,
//    U+2F800-2FA1F) get a space on each side; the text is split on whitespace (also U+2028/U+2029,
//    which Python's str.split() splits on); with `lowercase`, each word is lowercased and its
//    accents stripped; finally each punctuation character becomes a word of its own (ASCII 33-47,
//    58-64, 91-96, 123-126, and every character of Unicode category P*). Unicode tables are those
//    of Python 3.11's unicodedata (Unicode 14.0), written out in wordpiece.cpp.
//    Lowercasing and accent stripping without ICU, by tables: lowercasing is Python's str.lower()
//    one code point at a time (every script; U+0130 'İ' gives 'i'), except that Greek capital
//    sigma always becomes 'σ' (Python picks the final 'ς' at the end of a word). Accent
//    stripping (NFD, then drop category Mn) drops every Mn character, decomposes Hangul syllables
//    into conjoining jamo (NFD's algorithm), and maps every other precomposed character to its NFD
//    without Mn ('É' -> 'E', 'ệ' -> 'e', 'ά' -> 'α', 'й' -> 'и'; 'ł' and 'ß' stay: they have no
//    canonical decomposition), except the CJK compatibility ideographs (U+F900-FAFF,
//    U+2F800-2FA1F), which stay where NFD would give their unified ideograph. Checked against
//    tokenization.py (transcribed, Python 3.11) on every code point and on SST-2 and wikitext-2.
//    Special tokens in the text ("[CLS]", "[MASK]") are not recognised: like tokenization.py,
//    "[MASK]" becomes "[", "mask", "]" (Hugging Face's BertTokenizer keeps them whole).
// 2. WordPiece (WordpieceTokenizer): per word, greedy longest-match-first against the vocabulary;
//    pieces after the first carry the prefix "##". A word of more than 100 code points
//    (max_input_chars_per_word, Hugging Face's value; tokenization.py uses 200) or one that some
//    position cannot match becomes the single id of [UNK].
//
// Errors caused by the input (a missing or malformed vocab.txt, an id out of range, a bad
// argument) are pare::InputError with one line naming the file and line, the id or the argument.
// A WordPiece is immutable after construction: encode/decode may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace pare {

// Step 1 above: the words (UTF-8) BERT's BasicTokenizer makes of `text`.
std::vector<std::string> bert_basic_tokenize(const std::string& text, bool lowercase);

class WordPiece {
 public:
  // Hugging Face's vocab.txt: one token per line, id = line number counted from 0. Lines end in
  // \n, \r\n or \r (Python's universal newlines); a UTF-8 byte-order mark at the start is skipped.
  // InputError "FILE:LINE: ..." for an empty line, a line that is not valid UTF-8, or a token
  // already seen on an earlier line (both lines named). The vocabulary must hold [PAD], [UNK],
  // [CLS], [SEP] and [MASK]: InputError "FILE: ..." naming every one that is missing. A missing
  // or unreadable file is an InputError naming it. `lowercase` is do_lower_case (vocab.txt does
  // not record it: bert-base-uncased true, bert-base-cased false).
  static WordPiece load(const std::string& vocab_path, bool lowercase);
  // The same from tokens in id order; `source` names them in messages ("SOURCE: token 7: ...").
  // A token may not be empty or hold \n or \r (save() could not write it).
  static WordPiece from_tokens(std::vector<std::string> tokens, bool lowercase,
                               const std::string& source);

  // Ids of `text` (UTF-8), without [CLS] and [SEP].
  std::vector<int64_t> encode(const std::string& text) const;
  // [CLS] encode(text) [SEP], at most max_len ids: tokens past max_len - 2 are cut (keeping [CLS]
  // and [SEP]), and then *truncated (when not null) is set true, else false. max_len < 2 is an
  // InputError.
  std::vector<int64_t> encode_for_classification(const std::string& text, int64_t max_len,
                                                 bool* truncated) const;
  // Token strings of encode(text) ("##" on continuation pieces, "[UNK]" for unknown words).
  std::vector<std::string> tokenize(const std::string& text) const;
  // Hugging Face's convert_tokens_to_string: the tokens joined by spaces, each "##" piece glued
  // to the text before it ("un ##aff ##able" -> "unaffable"); special tokens are kept as text
  // ("[CLS] hello [SEP]"); no clean-up of spaces before punctuation ("hello , world !"). An id
  // outside [0, vocab_size) is an InputError.
  std::string decode(const std::vector<int64_t>& ids) const;

  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  int64_t mask_id() const { return mask_id_; }
  bool lowercase() const { return lowercase_; }
  // The token of `id`; InputError when id is outside [0, vocab_size).
  const std::string& token(int64_t id) const;
  // Id of `token`, -1 when the vocabulary does not hold it.
  int64_t id(const std::string& token) const;
  // Writes vocab.txt (one token per line, "\n" after each) atomically: a temporary file beside
  // `path`, then rename. InputError naming the path when it cannot be written.
  void save(const std::string& path) const;

 private:
  WordPiece() = default;
  // Checks and indexes `tokens`; messages name "SOURCE:LINE" (from_file) or "SOURCE: token ID".
  static WordPiece make(std::vector<std::string> tokens, bool lowercase, const std::string& source,
                        bool from_file);
  // Appends the WordPiece ids of one word of bert_basic_tokenize.
  void append_ids(const std::string& word, std::vector<int64_t>* out) const;

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
  bool lowercase_ = false;
  std::string source_;
  size_t max_token_chars_ = 0;  // longest token in code points, "##" not counted
  int64_t pad_id_ = -1, unk_id_ = -1, cls_id_ = -1, sep_id_ = -1, mask_id_ = -1;
};

// Builds a WordPiece vocabulary of at most `vocab_size` tokens from training text (for models pare
// trains). Ids: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4; then the alphabet, sorted by bytes
// (= code point order): every character seen at least min_char_frequency times, as a word-initial
// token "c" and a continuation token "##c" (punctuation and CJK ideographs only as "c": after
// bert_basic_tokenize they are always words of their own); then merged tokens in the order they
// were made. So every word of alphabet characters (at most 100 of them) encodes without [UNK].
//
// Merging uses the score of WordPiece training as described in Hugging Face's NLP
// course (chapter 6, "WordPiece tokenization"; Google did not publish its trainer): the texts are
// split by bert_basic_tokenize(text, lowercase) into words, counted once per distinct word; each
// word starts as its characters ("hug" -> h ##u ##g); with freq(t) the occurrences of token t in
// the current splits and freq(a, b) those of the adjacent pair, the pair with the highest
//   score(a, b) = freq(a, b) / (freq(a) · freq(b))
// is merged everywhere (a + b without b's "##": "##u" + "##g" -> "##ug", "h" + "##ug" -> "hug"),
// and this repeats until the vocabulary holds vocab_size tokens or no pair is left (then it is
// smaller). Ties: the higher freq(a, b), then the smaller id of a, then of b. A merge whose string
// is already a token adds nothing. (Hugging Face `tokenizers`' WordPieceTrainer itself runs
// count-based BPE merges; this is the score-based variant the course describes.) The score
// favours pairs of rare tokens, so frequent words are merged late: with 30 000 tokens from SST-2
// train + wikitext-2 valid, "the" is still th ##e and SST-2 dev takes 2.2 tokens per word
// (count-based merges: 1.05).
// Words holding a character seen fewer than min_char_frequency times, or more than 100 characters,
// are left out of training (they encode to [UNK]). Pair counts and scores are updated
// incrementally from the words a merge touches, with a lazily invalidated max-heap; the result is
// the same as recounting every pair at every merge. Speed on one core: 0.8 s for 30 000 tokens
// from SST-2 train + wikitext-2 valid (354 000 words, 25 000 distinct), 1.0 s from 1.3 M words.
// The result is deterministic: it depends only on the arguments. InputError when vocab_size is
// smaller than 5 + the alphabet (naming both sizes) or min_char_frequency < 1.
//
// WordPieceMerge::kCount scores a pair by freq(a, b) alone (BPE's rule, Sennrich et al. 2016; what
// Hugging Face's WordPieceTrainer runs). The likelihood score favours pairs of rare pieces: on
// WikiText-2 + Tiny Shakespeare + SST-2 train at 6000 tokens it spends the vocabulary on rare
// whole words ("jackhammer") and cuts common text into about 3.6 pieces per word, so the models
// pare trains use kCount (tasks/masked_lm.cpp, text_classification.cpp).
enum class WordPieceMerge { kLikelihood, kCount };
WordPiece build_wordpiece_vocab(const std::vector<std::string>& texts, int64_t vocab_size,
                                bool lowercase, int64_t min_char_frequency = 1,
                                WordPieceMerge merge = WordPieceMerge::kLikelihood);

}  // namespace pare
