// Labelled sentences for text classification (tasks/text_classification.cpp) and plain text for
// masked-language-model pre-training (tasks/masked_lm.cpp).
//
// Sentence files, by name:
//   *.tsv  a header row naming the columns "sentence" and "label" (GLUE's SST-2 train.tsv /
//          dev.tsv), tab-separated, no quoting;
//   *.csv  the same with commas; a field may be quoted ("..." with "" for a quote, RFC 4180;
//          no line breaks inside quotes);
//   other  one "LABEL SENTENCE" per line (the Harvard stsa.binary.* files of SST-2: label 0 =
//          negative, 1 = positive, then a space and the tokenised sentence).
// Labels are non-negative integers. Empty lines and a UTF-8 byte-order mark are skipped; a TSV/CSV
// row must have as many fields as the header. Anything else (a bad or missing
// label, no sentence, a missing column) is an InputError "FILE:LINE: ..." naming what was
// expected. A missing file is an InputError naming it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pare {

struct LabelledSentence {
  std::string text;
  int64_t label = 0;
  int64_t line = 0;  // 1-based line in its file
};

std::vector<LabelledSentence> read_labelled_sentences(const std::string& path);

// The non-empty lines of a UTF-8 text file (\n, \r\n), leading and trailing spaces trimmed.
std::vector<std::string> read_text_lines(const std::string& path);

}  // namespace pare
