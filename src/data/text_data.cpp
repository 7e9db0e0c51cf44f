#include "data/text_data.h"

#include <algorithm>
#include <cctype>

#include "base/error.h"
#include "base/fileio.h"

namespace pare {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r')) --b;
  return s.substr(a, b - a);
}

// Lines without their \n or \r\n; a UTF-8 byte-order mark at the start is skipped.
std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
    start = nl + 1;
  }
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// Fields of one delimited line; quoted fields (RFC 4180) when `quotes`.
std::vector<std::string> split_fields(const std::string& line, char sep, bool quotes, const std::string& where) {
  std::vector<std::string> out;
  std::string cur;
  bool in_q = false, was_quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (in_q) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (ch == '"') {
        in_q = false;
      } else {
        cur += ch;
      }
    } else if (quotes && ch == '"' && cur.empty() && !was_quoted) {
      in_q = was_quoted = true;
    } else if (ch == sep) {
      out.push_back(cur);
      cur.clear();
      was_quoted = false;
    } else {
      cur += ch;
    }
  }
  PARE_CHECK(!in_q, where, ": unterminated quoted field");
  out.push_back(cur);
  return out;
}

int64_t parse_label(const std::string& s, const std::string& where) {
  const std::string t = trim(s);
  bool ok = !t.empty() && t.size() <= 9;
  for (char ch : t) ok = ok && std::isdigit(static_cast<unsigned char>(ch));
  PARE_CHECK(ok, where, ": expected a label (a non-negative integer), got '", t.substr(0, 40), "'");
  return std::stoll(t);
}

}  // namespace

std::vector<LabelledSentence> read_labelled_sentences(const std::string& path) {
  const std::vector<std::string> lines = split_lines(read_file(path));
  std::vector<LabelledSentence> out;
  const bool tsv = ends_with(path, ".tsv"), csv = ends_with(path, ".csv");
  if (tsv || csv) {
    const char sep = tsv ? '\t' : ',';
    PARE_CHECK(!lines.empty(), path, ": empty file (expected a header row with sentence and label)");
    const auto header = split_fields(lines[0], sep, csv, path + ":1");
    int64_t cs = -1, cl = -1;
    for (size_t i = 0; i < header.size(); ++i) {
      if (trim(header[i]) == "sentence") cs = static_cast<int64_t>(i);
      if (trim(header[i]) == "label") cl = static_cast<int64_t>(i);
    }
    PARE_CHECK(cs >= 0 && cl >= 0, path, ":1: expected a header row naming the columns sentence and label");
    for (size_t i = 1; i < lines.size(); ++i) {
      if (trim(lines[i]).empty()) continue;
      const std::string where = concat(path, ":", i + 1);
      const auto f = split_fields(lines[i], sep, csv, where);
      PARE_CHECK(f.size() == header.size(), where, ": expected ", header.size(), " fields (as the header), got ",
                 f.size());
      LabelledSentence s{trim(f[cs]), parse_label(f[cl], where), static_cast<int64_t>(i + 1)};
      PARE_CHECK(!s.text.empty(), where, ": no sentence");
      out.push_back(std::move(s));
    }
  } else {
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string line = trim(lines[i]);
      if (line.empty()) continue;
      const std::string where = concat(path, ":", i + 1);
      const size_t sp = line.find(' ');
      LabelledSentence s;
      s.label = parse_label(line.substr(0, sp), where);
      s.text = sp == std::string::npos ? "" : trim(line.substr(sp + 1));
      s.line = static_cast<int64_t>(i + 1);
      PARE_CHECK(!s.text.empty(), where, ": no sentence after the label");
      out.push_back(std::move(s));
    }
  }
  PARE_CHECK(!out.empty(), path, ": no labelled sentences");
  return out;
}

std::vector<std::string> read_text_lines(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& l : split_lines(read_file(path))) {
    std::string t = trim(l);
    if (!t.empty()) out.push_back(std::move(t));
  }
  return out;
}

}  // namespace pare
