// Tokenizers for decoder language models: text <-> token ids.
//
// One interface, five kinds:
//   "sentencepiece"  a SentencePiece .model (protobuf), run by libsentencepiece.
//   "llama2c"        llama2.c's tokenizer.bin (or the same vocabulary from GGUF metadata), encoded
//                    and decoded exactly as llama2.c run.c does (greedy score-ordered merges).
//   "gpt2-bpe"       GPT-2 byte-level BPE: vocab.json + merges.txt, or a Hugging Face tokenizer.json.
//   "char"           character level, for models pare trains: a JSON list of characters.
//   "byte"           256 ids, id = byte value.
//
// No kind adds BOS/EOS in encode(); callers prepend bos_id() themselves when the model wants it.
// Every failure caused by the input (missing or corrupt file, bad JSON key, text a vocabulary cannot
// represent, out-of-range id) is a pare::InputError with one line naming the file, key or offset.
// Tokenizers are immutable after loading: encode/decode may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pare {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // "sentencepiece", "llama2c", "gpt2-bpe", "char" or "byte".
  virtual std::string kind() const = 0;
  // Token ids of `text` (UTF-8); no BOS/EOS added.
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Text of a whole id sequence; inverse of encode() for text the vocabulary covers (llama2c and
  // sentencepiece drop the dummy leading space encode() added; BOS/EOS/control ids decode to "").
  // An id outside [0, vocab_size) is an InputError.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  // Text of token `id` as it continues a sequence whose previous id is `prev` (for streaming greedy
  // output: concatenating decode_piece(ids[i-1], ids[i]) from prev = -1 gives decode(ids) whenever
  // that is valid UTF-8). prev = -1 means "start of text"; llama2c and sentencepiece strip the
  // token's leading space at the start and after BOS. Byte tokens give their raw byte, so one piece
  // may be part of a UTF-8 character. An id outside [0, vocab_size) is an InputError.
  virtual std::string decode_piece(int64_t prev, int64_t id) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t bos_id() const = 0;  // -1 when none
  virtual int64_t eos_id() const = 0;  // -1 when none
};

// SentencePiece .model file (any model type libsentencepiece runs: BPE, unigram, ...). encode and
// decode are libsentencepiece's (its normalizer runs: e.g. remove_extra_whitespaces collapses runs of
// spaces). bos/eos from the model (-1 when it has none). Load failure: InputError naming the file and
// sentencepiece's status. libsentencepiece.so.0 is dlopen()ed on first use, isolated from the rest
// of the process: Debian's build bundles and exports protobuf 3.14, which clashes with LibTorch's
// libprotobuf 3.21 when linked (crash at start-up). Do not link pare against libsentencepiece.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path);

// llama2.c tokenizer.bin: int32 max_token_length, then for each token float32 score, int32 len and
// len bytes, read to EOF (vocab size = number of entries; every len in [0, max_token_length]).
// Little-endian. A truncated file or a bad length is an InputError naming the byte offset.
// Encoding is exactly llama2.c run.c encode(): prepend the dummy-space token " " when the text is
// non-empty, look up each UTF-8 codepoint (a lead byte and at most 3 continuation bytes), byte
// fallback <0xXX> = id byte+3 for codepoints not in the vocabulary, then repeatedly merge the adjacent
// pair whose concatenation is a token with the highest score (ties: the leftmost pair). Done with a
// heap in O(n log n), same result as run.c's quadratic loop. Differences from run.c, where run.c
// would misbehave: a NUL byte is encoded (run.c stops at it), a vocabulary without " " encodes the
// dummy space by byte fallback (run.c writes id -1), duplicate pieces resolve to the lowest id.
// BOS 1, EOS 2. decode as run.c decode(): a leading space is stripped after BOS (and at the start,
// prev = -1), "<0xXX>" pieces become the raw byte; BOS and EOS decode to "".
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path);
// The same tokenizer from pieces and scores, e.g. GGUF tokenizer.ggml.tokens / .scores. Pieces may be
// in SentencePiece form: U+2581 ("▁") is read as a space, as llama2.c's exporter writes it. `source`
// names the origin in error messages.
std::unique_ptr<Tokenizer> make_llama2c_tokenizer(std::vector<std::string> pieces, std::vector<float> scores,
                                                  const std::string& source);

// GPT-2 byte-level BPE. `path` is a folder with vocab.json ({"token": id}) and merges.txt (optional
// "#version" first line, then one merge "a b" per line, highest priority first), or a Hugging Face
// tokenizer.json (model.type "BPE" with model.vocab and model.merges as "a b" strings or [a, b]
// pairs; pre_tokenizer ByteLevel, alone or as the only member of a Sequence; normalizer null). Text
// is split on added tokens (tokenizer.json added_tokens; "<|endoftext|>" for vocab.json), then
// pre-tokenized with GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (see gpt2_pretokenize), each chunk's bytes mapped through GPT-2's byte-to-unicode table and merged
// by rank (lowest rank first, all occurrences left to right, as GPT-2's encoder.py). bos = eos =
// "<|endoftext|>" when the vocabulary has it, else -1. Supported tokenizer.json options: ByteLevel
// add_prefix_space and use_regex, model.unk_token, model.ignore_merges; others that change the
// result (continuing_subword_prefix, end_of_word_suffix, byte_fallback, a normalizer, a Split
// pre-tokenizer) are refused with an InputError naming the key.
std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::string& path);

// GPT-2's pre-tokenization of `text` into chunks (concatenated they give back `text`). Implemented by
// hand over UTF-8 codepoints. \s is Unicode White_Space; \p{L} and \p{N} are approximated by tables
// covering Latin (with Extended-A/B, IPA and Extended Additional), Greek, Cyrillic, Armenian, Hebrew,
// Arabic, Devanagari, Thai, Georgian, Hangul, kana and CJK ideographs, fullwidth forms, and the common
// digit, superscript, fraction, Roman numeral and circled-number characters; letters of other scripts
// count as punctuation. Combining marks are not letters, as in Unicode. Invalid UTF-8 bytes count as
// one punctuation character each.
std::vector<std::string> gpt2_pretokenize(const std::string& text);

// Character level, for models pare trains. File: JSON {"kind": "char", "chars": ["\n", " ", "!", ...]},
// each entry exactly one UTF-8 character, no duplicates; id = index. Encoding a character that is not
// in the list is an InputError naming the character (U+XXXX) and its byte offset in the text.
// build_char_tokenizer(text) makes the sorted set (by codepoint) of the UTF-8 characters of `text`
// (invalid UTF-8 is an InputError naming the offset). save_char_tokenizer writes the JSON atomically
// (a temporary file in the same folder, then rename); `t` must be of kind "char".
std::unique_ptr<Tokenizer> build_char_tokenizer(const std::string& text);
void save_char_tokenizer(const Tokenizer& t, const std::string& path);
std::string char_tokenizer_json(const Tokenizer& t);  // the content save_char_tokenizer writes

// Byte level: 256 ids, id = byte value, no BOS/EOS.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// Picks the kind from the path. A folder: tokenizer.json, else vocab.json + merges.txt (gpt2-bpe),
// else tokenizer.model (sentencepiece), else tokenizer.bin (llama2c). A file: *.model ->
// sentencepiece, *.bin -> llama2c, *.json -> char when it has "kind": "char", gpt2-bpe when it has
// "model"; any other name by content ('{' -> JSON as above, protobuf field-1 tag 0x0A ->
// sentencepiece, else llama2c).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// InputError("SOURCE: tokenizer has N tokens but the model's vocab_size is M") unless they agree
// (a tokenizer may be smaller than the embedding only when allow_smaller).
void check_tokenizer_vocab(const Tokenizer& t, int64_t vocab_size, const std::string& source,
                           bool allow_smaller = false);

}  // namespace pare
