// Labelled-sentence files (data/text_data.h): SST-2's stsa lines, GLUE TSV, quoted CSV, and every
// bad-input case named by one line "FILE:LINE: ..."; the text batching of the text tasks.
#include "data/text_data.h"
#include "tasks/text_batches.h"
#include "test_util.h"

namespace pare {
namespace {

using pare_test::TempDir;
using pare_test::write_bytes;

TEST(TextData, ReadsStsaLines) {
  TempDir d;
  write_bytes(d.file("stsa.binary.train"), "\xEF\xBB\xBF" "1 a gripping , funny film .\r\n\n0 dull\n");  // BOM skipped
  const auto s = read_labelled_sentences(d.file("stsa.binary.train"));
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].text, "a gripping , funny film .");
  EXPECT_EQ(s[0].label, 1);
  EXPECT_EQ(s[0].line, 1);
  EXPECT_EQ(s[1].text, "dull");
  EXPECT_EQ(s[1].label, 0);
  EXPECT_EQ(s[1].line, 3);
}

TEST(TextData, ReadsTsvAndQuotedCsvByHeader) {
  TempDir d;
  write_bytes(d.file("train.tsv"), "sentence\tlabel\nhide new secretions \t0\ngreat fun\t1\n");
  auto t = read_labelled_sentences(d.file("train.tsv"));
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].text, "hide new secretions");
  EXPECT_EQ(t[1].label, 1);
  write_bytes(d.file("train.csv"), "label,sentence\n1,\"good, \"\"really\"\" good\"\n0,bad\n");
  auto c = read_labelled_sentences(d.file("train.csv"));
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].text, "good, \"really\" good");
  EXPECT_EQ(c[0].label, 1);
  EXPECT_EQ(c[1].line, 3);
}

TEST(TextData, BadLinesAreNamedByFileAndLine) {
  TempDir d;
  write_bytes(d.file("a.txt"), "1 fine\npositive great\n");
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("a.txt")),
                     ::testing::HasSubstr("a.txt:2: expected a label (a non-negative integer), got 'positive'"));
  write_bytes(d.file("b.txt"), "1 fine\n0\n");
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("b.txt")), ::testing::HasSubstr("b.txt:2: no sentence"));
  write_bytes(d.file("c.tsv"), "sentence\tlabel\nok\t1\nnot ok\t-1\n");
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("c.tsv")), ::testing::HasSubstr("c.tsv:3: expected a label"));
  write_bytes(d.file("d.tsv"), "text\tlabel\nok\t1\n");
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("d.tsv")),
                     ::testing::HasSubstr("d.tsv:1: expected a header row naming the columns sentence and label"));
  write_bytes(d.file("e.tsv"), "sentence\tlabel\n\t1\n");
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("e.tsv")), ::testing::HasSubstr("e.tsv:2: no sentence"));
  write_bytes(d.file("f.csv"), "sentence,label\n\"open,1\n");
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("f.csv")), ::testing::HasSubstr("f.csv:2: unterminated quoted"));
  write_bytes(d.file("h.tsv"), "sentence\tlabel\nok\t1\nextra field\t1\tmore\n");
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("h.tsv")),
                     ::testing::HasSubstr("h.tsv:3: expected 2 fields (as the header), got 3"));
  write_bytes(d.file("g.txt"), "\n\n");
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("g.txt")), ::testing::HasSubstr("g.txt: no labelled sentences"));
  EXPECT_INPUT_ERROR(read_labelled_sentences(d.file("missing.txt")), ::testing::HasSubstr("missing.txt"));
}

TEST(TextBatches, EncodesWithClsSepCutsLongSentencesAndPads) {
  const WordPiece tok = WordPiece::from_tokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"},
                                               true, "test");
  const std::vector<LabelledSentence> s{{"a b", 1, 1}, {"c c c c c", 0, 2}, {"A", 1, 3}};
  const Encoded e = encode_sentences(tok, s, 5, -1, "f");
  ASSERT_EQ(e.ids.size(), 3u);
  EXPECT_EQ(e.ids[0], (std::vector<int64_t>{2, 5, 6, 3}));
  EXPECT_EQ(e.ids[1], (std::vector<int64_t>{2, 7, 7, 7, 3}));  // cut to 5 positions, [SEP] kept
  EXPECT_EQ(e.ids[2], (std::vector<int64_t>{2, 5, 3}));        // uncased
  EXPECT_EQ(e.truncated, 1);
  EXPECT_EQ(e.tokens(), 12);
  const torch::Tensor b = pad_batch(e.ids, {2, 0}, e.pad);
  EXPECT_TRUE(torch::equal(b, torch::tensor({2, 5, 3, 0, 2, 5, 6, 3}, torch::kLong).view({2, 4})));
  EXPECT_EQ(encode_sentences(tok, s, 5, 1, "f").ids.size(), 1u);
}

}  // namespace
}  // namespace pare
