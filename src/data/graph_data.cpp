// Graph data sets: TUDataset reader, seeded splits, RWSE / LapPE encodings, PyG-style collate and
// the binary cache.
//
// Cache format ("PAREGRPH", version 1). All numbers little-endian; i64/u64 8 bytes, u32 4 bytes,
// f64 / f32 IEEE-754. A "str" is u64 byte length + bytes (no terminator); a "vec<T>" is u64
// element count + the elements.
//
//   offset 0   magic "PAREGRPH" (8 bytes)
//   offset 8   u32 version (1)
//              str name, str task
//              i64 num_classes, node_cat_dims, node_attr_dims, edge_cat_dims, rwse_steps, lappe_dim
//              vec<i64> node_vocab, vec<i64> edge_vocab
//              u64 number of graphs G, then per graph:
//                i64 num_nodes, f64 y,
//                vec<i64> edge_src, vec<i64> edge_dst, vec<i64> node_cat, vec<f32> node_attr,
//                vec<i64> edge_cat, vec<f32> rwse, vec<f32> lap_vec, vec<f32> lap_val
//              u64 number of splits S, then per split: str name, vec<i64> graph indices
//   end of file (trailing bytes are an error)
//
// Every element count is checked against the bytes left before anything is allocated, and every
// array length against the data set's dimensions, so a truncated or corrupt file fails with an
// InputError naming the file and the byte offset of the bad field. The file is written to a
// temporary file and renamed (write_file_atomic): a crash never leaves a partial cache.
#include "data/graph_data.h"

#include <Eigen/Dense>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>
#include <string_view>

#include "base/error.h"
#include "base/fileio.h"

namespace pare {
namespace {

// ---------------------------------------------------------------------------------------------
// TUDataset text files

// One TU text file split into lines ('\n', a trailing '\r' dropped). Trailing blank lines at the end
// of the file are dropped; a blank line anywhere else is a malformed line.
struct TextFile {
  std::string path;
  std::string text;
  std::vector<std::string_view> lines;
};

TextFile read_lines(const std::string& path) {
  TextFile f;
  f.path = path;
  f.text = read_file(path);
  std::string_view all(f.text);
  size_t pos = 0;
  while (pos < all.size()) {
    size_t nl = all.find('\n', pos);
    if (nl == std::string_view::npos) nl = all.size();
    std::string_view line = all.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f.lines.push_back(line);
    pos = nl + 1;
  }
  while (!f.lines.empty() && f.lines.back().find_first_not_of(" \t") == std::string_view::npos)
    f.lines.pop_back();
  return f;
}

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// A line shortened for error messages.
std::string shown(std::string_view line) {
  return line.size() <= 60 ? std::string(line) : std::string(line.substr(0, 57)) + "...";
}

// Comma-separated fields of a line, trimmed ("1, 2" and "1,2" both give {"1", "2"}).
std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    const size_t c = line.find(',', pos);
    out.push_back(trim(line.substr(pos, c == std::string_view::npos ? std::string_view::npos : c - pos)));
    if (c == std::string_view::npos) break;
    pos = c + 1;
  }
  return out;
}

bool parse_int(std::string_view s, int64_t& v) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool parse_double(std::string_view s, double& v) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Checks that `f` has exactly `expected` lines, one per item of `count_file` (e.g. one label per
// node of the graph indicator). `what` names the item ("node label", "graph label").
void check_line_count(const TextFile& f, size_t expected, const std::string& what,
                      const std::string& count_file) {
  PARE_CHECK(f.lines.size() >= expected, f.path, ": line ", f.lines.size() + 1, ": expected a ", what,
             " (", expected, " lines, as ", count_file, " has), got end of file after ",
             f.lines.size(), " lines");
  PARE_CHECK(f.lines.size() <= expected, f.path, ": line ", expected + 1,
             ": expected end of file (", expected, " lines, as ", count_file, " has), got '",
             shown(f.lines[expected]), "'");
}

// A table of integer labels, one row per line, the same number of columns on every line.
std::vector<int64_t> read_int_table(const TextFile& f, const std::string& what, int64_t& cols) {
  cols = 0;
  std::vector<int64_t> out;
  for (size_t i = 0; i < f.lines.size(); ++i) {
    const auto fs = fields(f.lines[i]);
    if (i == 0) cols = static_cast<int64_t>(fs.size());
    PARE_CHECK(static_cast<int64_t>(fs.size()) == cols, f.path, ": line ", i + 1, ": expected ",
               cols, " comma-separated ", what, "s (as on line 1), got '", shown(f.lines[i]), "'");
    for (const auto& s : fs) {
      int64_t v = 0;
      PARE_CHECK(parse_int(s, v), f.path, ": line ", i + 1, ": expected an integer ", what,
                 ", got '", shown(f.lines[i]), "'");
      out.push_back(v);
    }
  }
  return out;
}

// Remaps every column of a row-major [rows × cols] table to 0..n-1 in sorted order of its distinct
// values; returns n per column (the vocabulary sizes).
std::vector<int64_t> remap_columns(std::vector<int64_t>& table, int64_t cols) {
  std::vector<int64_t> vocab(cols, 0);
  if (cols == 0) return vocab;
  const size_t rows = table.size() / cols;
  for (int64_t c = 0; c < cols; ++c) {
    std::vector<int64_t> distinct;
    distinct.reserve(rows);
    for (size_t r = 0; r < rows; ++r) distinct.push_back(table[r * cols + c]);
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    for (size_t r = 0; r < rows; ++r) {
      int64_t& v = table[r * cols + c];
      v = std::lower_bound(distinct.begin(), distinct.end(), v) - distinct.begin();
    }
    vocab[c] = static_cast<int64_t>(distinct.size());
  }
  return vocab;
}

// Edge ids of a graph built in code (not by the reader) must be node ids of the graph.
void check_graph(const Graph& g, const char* fn) {
  PARE_CHECK(g.num_nodes >= 0 && g.edge_src.size() == g.edge_dst.size(), fn,
             ": graph has ", g.num_nodes, " nodes, ", g.edge_src.size(), " edge sources and ",
             g.edge_dst.size(), " edge targets (expected num_nodes >= 0 and equal lengths)");
  for (size_t e = 0; e < g.edge_src.size(); ++e)
    PARE_CHECK(g.edge_src[e] >= 0 && g.edge_src[e] < g.num_nodes && g.edge_dst[e] >= 0 &&
                   g.edge_dst[e] < g.num_nodes,
               fn, ": edge ", e, " (", g.edge_src[e], " -> ", g.edge_dst[e],
               ") expected node ids in 0..", g.num_nodes - 1);
}

// ---------------------------------------------------------------------------------------------
// Binary cache

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the graph cache stores host-order numbers and is defined little-endian");

constexpr char kMagic[8] = {'P', 'A', 'R', 'E', 'G', 'R', 'P', 'H'};
constexpr uint32_t kVersion = 1;

class Writer {
 public:
  template <class T>
  void put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    out_ += s;
  }
  template <class T>
  void vec(const std::vector<T>& v) {
    put<uint64_t>(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void raw(const char* p, size_t n) { out_.append(p, n); }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  Reader(const std::string& path, const std::string& bytes) : path_(path), b_(bytes) {}
  size_t offset() const { return off_; }
  size_t left() const { return b_.size() - off_; }
  const std::string& path() const { return path_; }

  template <class T>
  T get(const char* what) {
    PARE_CHECK(left() >= sizeof(T), path_, ": offset ", off_, ": expected ", sizeof(T),
               "-byte ", what, ", got ", left(), " bytes before the end of the file (truncated)");
    T v;
    std::memcpy(&v, b_.data() + off_, sizeof(T));
    off_ += sizeof(T);
    return v;
  }
  // An element count, checked against the bytes left (each element `elem` bytes).
  uint64_t count(const char* what, size_t elem) {
    const size_t at = off_;
    const uint64_t n = get<uint64_t>(what);
    PARE_CHECK(n <= left() / elem, path_, ": offset ", at, ": ", what, " count ", n, " needs ",
               n, " × ", elem, " bytes, but only ", left(), " bytes remain (truncated or corrupt)");
    return n;
  }
  std::string str(const char* what) {
    const uint64_t n = count(what, 1);
    std::string s = b_.substr(off_, n);
    off_ += n;
    return s;
  }
  template <class T>
  std::vector<T> vec(const char* what) {
    const uint64_t n = count(what, sizeof(T));
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), b_.data() + off_, n * sizeof(T));
    off_ += n * sizeof(T);
    return v;
  }
  // Reads a vec<T> that must hold exactly `expected` elements (e.g. num_nodes × dims).
  template <class T>
  std::vector<T> vec_of(const char* what, uint64_t expected, const std::string& why) {
    const size_t at = off_;
    std::vector<T> v = vec<T>(what);
    PARE_CHECK(v.size() == expected, path_, ": offset ", at, ": ", what, " has ", v.size(),
               " elements, expected ", expected, " (", why, "; corrupt cache)");
    return v;
  }

 private:
  const std::string& path_;
  const std::string& b_;
  size_t off_ = 0;
};

// Categorical ids must index their vocabularies: [rows × vocab.size()] row-major.
void check_categories(const Reader& r, size_t at, const char* what, const std::vector<int64_t>& t,
                      const std::vector<int64_t>& vocab) {
  const size_t cols = vocab.size();
  for (size_t i = 0; i < t.size(); ++i)
    PARE_CHECK(t[i] >= 0 && t[i] < vocab[i % cols], r.path(), ": offset ", at, ": ", what,
               " value ", t[i], " at element ", i, " outside 0..", vocab[i % cols] - 1,
               " (corrupt cache)");
}

// The arrays of graph `gi` match the data set's dimensions (encodings only when computed). A
// mismatch is a bug in the code that built or edited the data set.
void check_dims(const GraphDataset& ds, int64_t gi, const char* fn) {
  const Graph& g = ds.graphs[gi];
  const size_t n = g.num_nodes, m = g.edge_src.size();
  const size_t K = ds.rwse_steps, k = ds.lappe_dim;
  PARE_ASSERT(g.num_nodes >= 0 && g.edge_dst.size() == m && g.node_cat.size() == n * ds.node_cat_dims &&
                  g.node_attr.size() == n * ds.node_attr_dims && g.edge_cat.size() == m * ds.edge_cat_dims &&
                  (K == 0 || g.rwse.size() == n * K) && (k == 0 || g.lap_vec.size() == n * k) &&
                  (k == 0 || g.lap_val.size() == k) &&
                  ds.node_vocab.size() == static_cast<size_t>(ds.node_cat_dims) &&
                  ds.edge_vocab.size() == static_cast<size_t>(ds.edge_cat_dims),
              fn, ": graph ", gi, " of '", ds.name,
              "' has arrays that disagree with the data set's dimensions");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

GraphDataset load_tu_dataset(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  PARE_CHECK(fs::is_directory(dir), dir, ": TU data set folder not found");
  // Lexically normal and without a trailing '/', so "DIR/", "DIR/." and "X/../DIR" give DIR's
  // name and clean paths.
  std::string base = fs::path(dir).lexically_normal().string();
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  const std::string nm = name.empty() ? fs::path(base).filename().string() : name;
  const auto file = [&](const std::string& suffix) { return base + "/" + nm + "_" + suffix + ".txt"; };
  const auto require = [&](const std::string& path, const char* what) {
    PARE_CHECK(file_exists(path), path, ": not found (the TUDataset ", what,
               " file; check the folder and the data set name '", nm, "')");
  };

  // Graph indicator: graph id (1-based) of every node. Ids must start at 1, never decrease and
  // never skip an id (a skipped id is a graph without nodes), so each graph's nodes are contiguous.
  const std::string ind_path = file("graph_indicator"), a_path = file("A");
  require(ind_path, "graph indicator");
  require(a_path, "adjacency (A)");
  const TextFile ind = read_lines(ind_path);
  PARE_CHECK(!ind.lines.empty(), ind_path, ": line 1: expected a graph id per node, got an empty file");
  const int64_t N = static_cast<int64_t>(ind.lines.size());
  std::vector<int64_t> graph_of(N);    // 0-based graph of each node
  std::vector<int64_t> node_offset;    // first global node (0-based) of each graph
  for (int64_t i = 0; i < N; ++i) {
    int64_t gid = 0;
    const auto fs = fields(ind.lines[i]);
    PARE_CHECK(fs.size() == 1 && parse_int(fs[0], gid), ind_path, ": line ", i + 1,
               ": expected one integer graph id, got '", shown(ind.lines[i]), "'");
    const int64_t prev = node_offset.size();  // current graph id (1-based), 0 before line 1
    PARE_CHECK(gid >= prev, ind_path, ": line ", i + 1, ": expected graph id >= ", prev,
               " (ids must not decrease: each graph's nodes are contiguous), got ", gid);
    PARE_CHECK(gid <= prev + 1, ind_path, ": line ", i + 1, ": expected graph id ", prev,
               " or ", prev + 1, ", got ", gid, " (graph ", prev + 1, " would have no nodes)");
    if (gid == prev + 1) node_offset.push_back(i);
    graph_of[i] = gid - 1;
  }
  const int64_t G = static_cast<int64_t>(node_offset.size());
  node_offset.push_back(N);

  GraphDataset ds;
  ds.name = nm;
  ds.graphs.resize(G);
  for (int64_t g = 0; g < G; ++g) ds.graphs[g].num_nodes = node_offset[g + 1] - node_offset[g];
  const std::string ind_desc = concat(ind_path, " (", N, " nodes)");
  const std::string graphs_desc = concat(ind_path, " (", G, " graphs)");

  // Graph labels: integers → classes remapped to 0..C-1; any non-integer → regression. Without a
  // label file, a one-column graph attribute file is the regression target (ZINC).
  const std::string lab_path = file("graph_labels"), gattr_path = file("graph_attributes");
  const bool have_labels = file_exists(lab_path);
  PARE_CHECK(have_labels || file_exists(gattr_path), lab_path,
             ": not found (the TUDataset graph label file; ", gattr_path,
             " is not there either; check the folder and the data set name '", nm, "')");
  {
    const TextFile lab = read_lines(have_labels ? lab_path : gattr_path);
    check_line_count(lab, G, "graph label", graphs_desc);
    std::vector<double> y(G);
    bool integral = have_labels;
    for (int64_t g = 0; g < G; ++g) {
      const auto fs = fields(lab.lines[g]);
      PARE_CHECK(fs.size() == 1 && parse_double(fs[0], y[g]) && std::isfinite(y[g]), lab.path,
                 ": line ", g + 1, ": expected one number (the graph's label), got '",
                 shown(lab.lines[g]), "'");
      int64_t iv = 0;
      if (integral && !parse_int(fs[0], iv)) integral = false;
    }
    if (integral) {
      std::vector<int64_t> cls(y.begin(), y.end());
      ds.num_classes = remap_columns(cls, 1)[0];
      for (int64_t g = 0; g < G; ++g) ds.graphs[g].y = static_cast<double>(cls[g]);
      ds.task = "classification";
    } else {
      for (int64_t g = 0; g < G; ++g) ds.graphs[g].y = y[g];
      ds.task = "regression";
      ds.num_classes = 0;
    }
  }

  // Node labels (categorical) and attributes (dense), one line per node.
  if (const std::string p = file("node_labels"); file_exists(p)) {
    const TextFile f = read_lines(p);
    check_line_count(f, N, "node label", ind_desc);
    std::vector<int64_t> t = read_int_table(f, "node label", ds.node_cat_dims);
    ds.node_vocab = remap_columns(t, ds.node_cat_dims);
    for (int64_t g = 0; g < G; ++g)
      ds.graphs[g].node_cat.assign(t.begin() + node_offset[g] * ds.node_cat_dims,
                                   t.begin() + node_offset[g + 1] * ds.node_cat_dims);
  }
  if (const std::string p = file("node_attributes"); file_exists(p)) {
    const TextFile f = read_lines(p);
    check_line_count(f, N, "node attribute row", ind_desc);
    std::vector<float> t;
    for (int64_t i = 0; i < N; ++i) {
      const auto fs = fields(f.lines[i]);
      if (i == 0) ds.node_attr_dims = static_cast<int64_t>(fs.size());
      PARE_CHECK(static_cast<int64_t>(fs.size()) == ds.node_attr_dims, p, ": line ", i + 1,
                 ": expected ", ds.node_attr_dims, " comma-separated attributes (as on line 1), got '",
                 shown(f.lines[i]), "'");
      for (const auto& s : fs) {
        double v = 0;
        PARE_CHECK(parse_double(s, v), p, ": line ", i + 1, ": expected numeric attributes, got '",
                   shown(f.lines[i]), "'");
        t.push_back(static_cast<float>(v));
      }
    }
    for (int64_t g = 0; g < G; ++g)
      ds.graphs[g].node_attr.assign(t.begin() + node_offset[g] * ds.node_attr_dims,
                                    t.begin() + node_offset[g + 1] * ds.node_attr_dims);
  }

  // Edges: "i, j" with 1-based global node ids, both in the same graph. Kept in file order.
  const TextFile a = read_lines(a_path);
  std::vector<int64_t> edge_graph(a.lines.size());
  for (size_t e = 0; e < a.lines.size(); ++e) {
    const auto fs = fields(a.lines[e]);
    int64_t i = 0, j = 0;
    PARE_CHECK(fs.size() == 2 && parse_int(fs[0], i) && parse_int(fs[1], j), a_path, ": line ",
               e + 1, ": expected two integer node ids 'i, j', got '", shown(a.lines[e]), "'");
    PARE_CHECK(i >= 1 && i <= N && j >= 1 && j <= N, a_path, ": line ", e + 1,
               ": expected node ids in 1..", N, " (the nodes of ", ind_path, "), got '",
               shown(a.lines[e]), "'");
    const int64_t g = graph_of[i - 1];
    PARE_CHECK(graph_of[j - 1] == g, a_path, ": line ", e + 1, ": expected both nodes in one graph, got node ",
               i, " in graph ", g + 1, " and node ", j, " in graph ", graph_of[j - 1] + 1);
    ds.graphs[g].edge_src.push_back(i - 1 - node_offset[g]);
    ds.graphs[g].edge_dst.push_back(j - 1 - node_offset[g]);
    edge_graph[e] = g;
  }
  if (const std::string p = file("edge_labels"); file_exists(p)) {
    const TextFile f = read_lines(p);
    check_line_count(f, a.lines.size(), "edge label", concat(a_path, " (", a.lines.size(), " edges)"));
    std::vector<int64_t> t = read_int_table(f, "edge label", ds.edge_cat_dims);
    ds.edge_vocab = remap_columns(t, ds.edge_cat_dims);
    for (size_t e = 0; e < a.lines.size(); ++e) {
      auto& ec = ds.graphs[edge_graph[e]].edge_cat;
      ec.insert(ec.end(), t.begin() + e * ds.edge_cat_dims, t.begin() + (e + 1) * ds.edge_cat_dims);
    }
  }
  // NAME_edge_attributes.txt and NAME_graph_attributes.txt beside a label file are not read: the
  // in-memory Graph has no dense edge features and one target per graph.
  return ds;
}

void random_split(GraphDataset& ds, double train, double valid, uint64_t seed) {
  PARE_CHECK(train >= 0 && valid >= 0 && train + valid <= 1 + 1e-9, "random_split: fractions train ",
             train, " and valid ", valid, ": expected non-negative values with train + valid <= 1");
  const int64_t n = ds.size();
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  // Fisher–Yates with an unbiased draw by rejection (std::uniform_int_distribution's algorithm is
  // not specified by the standard, so it could split differently with another library).
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % bound;
    uint64_t r;
    do r = rng();
    while (r >= limit);
    std::swap(perm[i], perm[r % bound]);
  }
  const int64_t n_train = std::min<int64_t>(n, std::llround(train * n));
  const int64_t n_valid = std::min<int64_t>(n - n_train, std::llround(valid * n));
  auto part = [&](int64_t b, int64_t e) {
    std::vector<int64_t> v(perm.begin() + b, perm.begin() + e);
    std::sort(v.begin(), v.end());
    return v;
  };
  ds.splits["train"] = part(0, n_train);
  ds.splits["valid"] = part(n_train, n_train + n_valid);
  ds.splits["test"] = part(n_train + n_valid, n);
}

// RWSE as GraphGPS computes it (posenc_stats.get_rw_landing_probs): A[i, j] counts the edges
// i → j of the edge list as given (duplicates add up), P = D⁻¹A with D the out-degree (rows of
// isolated nodes stay 0), and the result is diag(P^k) for k = 1..K.
std::vector<float> rwse(const Graph& g, int64_t K) {
  PARE_CHECK(K >= 1, "rwse: expected K >= 1 steps, got ", K);
  check_graph(g, "rwse");
  const int64_t n = g.num_nodes;
  std::vector<float> out(n * K, 0.0f);
  if (n == 0) return out;
  std::vector<double> inv_deg(n, 0.0);
  for (int64_t s : g.edge_src) inv_deg[s] += 1.0;
  for (double& d : inv_deg) d = d > 0 ? 1.0 / d : 0.0;
  Eigen::MatrixXd pk = Eigen::MatrixXd::Zero(n, n);  // P^k, starting at k = 1
  for (int64_t e = 0; e < g.num_edges(); ++e) pk(g.edge_src[e], g.edge_dst[e]) += inv_deg[g.edge_src[e]];
  Eigen::MatrixXd next(n, n);
  for (int64_t k = 1; k <= K; ++k) {
    for (int64_t i = 0; i < n; ++i) out[i * K + (k - 1)] = static_cast<float>(pk(i, i));
    if (k == K) break;
    // P^(k+1) = P^k · P; P is sparse, so column j gains P^k[:, s] / deg(s) per edge s → j
    // (n · E work per step instead of n³).
    next.setZero();
    for (int64_t e = 0; e < g.num_edges(); ++e)
      next.col(g.edge_dst[e]) += pk.col(g.edge_src[e]) * inv_deg[g.edge_src[e]];
    pk.swap(next);
  }
  return out;
}

// LapPE as GraphGPS computes it (posenc_stats.compute_posenc_stats, 'sym' normalisation): the
// edge list is made undirected and coalesced (A[i, j] = A[j, i] = 1 when either direction is
// listed; duplicates count once; self-loops are dropped, as PyG's get_laplacian does),
// L = I − D^-1/2 A D^-1/2 with D^-1/2 = 0 for isolated nodes (their row of L is the identity
// entry alone, eigenvalue 1). Eigen's SelfAdjointEigenSolver returns the eigenvalues ascending;
// the first min(n, k) are kept, clamped at 0 (rounding gives -1e-16), and each eigenvector's first
// entry with |v| > 1e-6 is made positive. Columns/values n..k-1 are zero when n < k.
//
// Degenerate eigenvalues (a cycle's or a star's repeated λ = 1, the λ = 1 of isolated nodes)
// have no unique eigenvectors: the solver returns some orthonormal basis of the eigenspace, and
// the sign rule cannot make it unique. It is deterministic for one build, but only
// basis-independent properties (the eigenvalues, L v = λ v, orthonormality) are guaranteed.
void lappe(const Graph& g, int64_t k, std::vector<float>& vec, std::vector<float>& val) {
  PARE_CHECK(k >= 1, "lappe: expected k >= 1 eigenvectors, got ", k);
  check_graph(g, "lappe");
  const int64_t n = g.num_nodes;
  vec.assign(n * k, 0.0f);
  val.assign(k, 0.0f);
  if (n == 0) return;
  Eigen::MatrixXd adj = Eigen::MatrixXd::Zero(n, n);
  for (int64_t e = 0; e < g.num_edges(); ++e) {
    const int64_t s = g.edge_src[e], d = g.edge_dst[e];
    if (s == d) continue;
    adj(s, d) = adj(d, s) = 1.0;
  }
  Eigen::VectorXd dinv = adj.rowwise().sum();
  for (int64_t i = 0; i < n; ++i) dinv(i) = dinv(i) > 0 ? 1.0 / std::sqrt(dinv(i)) : 0.0;
  const Eigen::MatrixXd lap =
      Eigen::MatrixXd::Identity(n, n) - dinv.asDiagonal() * adj * dinv.asDiagonal();
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(lap);
  PARE_ASSERT(es.info() == Eigen::Success, "lappe: eigen decomposition of a ", n, "-node Laplacian failed");
  const int64_t m = std::min(n, k);
  for (int64_t c = 0; c < m; ++c) {
    Eigen::VectorXd v = es.eigenvectors().col(c);
    for (int64_t i = 0; i < n; ++i)
      if (std::abs(v(i)) > 1e-6) {
        if (v(i) < 0) v = -v;
        break;
      }
    for (int64_t i = 0; i < n; ++i) vec[i * k + c] = static_cast<float>(v(i));
    val[c] = static_cast<float>(std::max(es.eigenvalues()(c), 0.0));
  }
}

void compute_rwse(GraphDataset& ds, int64_t K) {
  PARE_CHECK(K >= 1, "compute_rwse: expected K >= 1 steps, got ", K);
  for (auto& g : ds.graphs) g.rwse = rwse(g, K);
  ds.rwse_steps = K;
}

void compute_lappe(GraphDataset& ds, int64_t k) {
  PARE_CHECK(k >= 1, "compute_lappe: expected k >= 1 eigenvectors, got ", k);
  for (auto& g : ds.graphs) lappe(g, k, g.lap_vec, g.lap_val);
  ds.lappe_dim = k;
}

GraphBatch collate(const GraphDataset& ds, const std::vector<int64_t>& idx) {
  int64_t N = 0, E = 0;
  for (int64_t i : idx) {
    PARE_CHECK(i >= 0 && i < ds.size(), "collate: graph index ", i, " outside 0..", ds.size() - 1,
               " of data set '", ds.name, "'");
    N += ds.graphs[i].num_nodes;
    E += ds.graphs[i].num_edges();
  }
  const int64_t G = static_cast<int64_t>(idx.size());
  const int64_t Fc = ds.node_cat_dims, Fd = ds.node_attr_dims, Fe = ds.edge_cat_dims;
  const int64_t K = ds.rwse_steps, k = ds.lappe_dim;
  const auto i64 = torch::kInt64, f32 = torch::kFloat32;
  GraphBatch b;
  b.num_graphs = G;
  b.edge_index = torch::empty({2, E}, i64);
  b.batch = torch::empty({N}, i64);
  b.ptr = torch::empty({G + 1}, i64);
  const bool cls = ds.task == "classification";
  b.y = torch::empty({G}, cls ? i64 : f32);
  if (Fc) b.node_cat = torch::empty({N, Fc}, i64);
  if (Fd) b.node_attr = torch::empty({N, Fd}, f32);
  if (Fe) b.edge_cat = torch::empty({E, Fe}, i64);
  if (K) b.rwse = torch::empty({N, K}, f32);
  if (k) {
    b.lap_vec = torch::empty({N, k}, f32);
    b.lap_val = torch::empty({N, k}, f32);
  }
  int64_t* ei = b.edge_index.data_ptr<int64_t>();
  int64_t* bt = b.batch.data_ptr<int64_t>();
  int64_t* ptr = b.ptr.data_ptr<int64_t>();
  int64_t node = 0, edge = 0;
  ptr[0] = 0;
  for (int64_t gi = 0; gi < G; ++gi) {
    const Graph& g = ds.graphs[idx[gi]];
    const int64_t n = g.num_nodes, m = g.num_edges();
    check_dims(ds, idx[gi], "collate");
    for (int64_t e = 0; e < m; ++e) {
      ei[edge + e] = g.edge_src[e] + node;
      ei[E + edge + e] = g.edge_dst[e] + node;
    }
    std::fill(bt + node, bt + node + n, gi);
    if (cls)
      b.y.data_ptr<int64_t>()[gi] = static_cast<int64_t>(g.y);
    else
      b.y.data_ptr<float>()[gi] = static_cast<float>(g.y);
    if (Fc) std::copy(g.node_cat.begin(), g.node_cat.end(), b.node_cat.data_ptr<int64_t>() + node * Fc);
    if (Fd) std::copy(g.node_attr.begin(), g.node_attr.end(), b.node_attr.data_ptr<float>() + node * Fd);
    if (Fe) std::copy(g.edge_cat.begin(), g.edge_cat.end(), b.edge_cat.data_ptr<int64_t>() + edge * Fe);
    if (K) std::copy(g.rwse.begin(), g.rwse.end(), b.rwse.data_ptr<float>() + node * K);
    if (k) {
      std::copy(g.lap_vec.begin(), g.lap_vec.end(), b.lap_vec.data_ptr<float>() + node * k);
      float* lv = b.lap_val.data_ptr<float>() + node * k;
      for (int64_t i = 0; i < n; ++i) std::copy(g.lap_val.begin(), g.lap_val.end(), lv + i * k);
    }
    node += n;
    edge += m;
    ptr[gi + 1] = node;
  }
  return b;
}

GraphStats graph_stats(const GraphDataset& ds, const std::vector<int64_t>& idx) {
  GraphStats s;
  double nodes = 0, edges = 0;
  auto add = [&](const Graph& g) {
    nodes += g.num_nodes;
    edges += g.num_edges();
    s.max_nodes = std::max(s.max_nodes, g.num_nodes);
    s.max_edges = std::max(s.max_edges, g.num_edges());
    ++s.graphs;
  };
  if (idx.empty()) {
    for (const auto& g : ds.graphs) add(g);
  } else {
    for (int64_t i : idx) {
      PARE_CHECK(i >= 0 && i < ds.size(), "graph_stats: graph index ", i, " outside 0..",
                 ds.size() - 1, " of data set '", ds.name, "'");
      add(ds.graphs[i]);
    }
  }
  if (s.graphs) {
    s.mean_nodes = nodes / s.graphs;
    s.mean_edges = edges / s.graphs;
  }
  return s;
}

void save_graph_cache(const GraphDataset& ds, const std::string& path) {
  Writer w;
  w.raw(kMagic, sizeof kMagic);
  w.put<uint32_t>(kVersion);
  w.str(ds.name);
  w.str(ds.task);
  for (int64_t v : {ds.num_classes, ds.node_cat_dims, ds.node_attr_dims, ds.edge_cat_dims,
                    ds.rwse_steps, ds.lappe_dim})
    w.put<int64_t>(v);
  w.vec(ds.node_vocab);
  w.vec(ds.edge_vocab);
  w.put<uint64_t>(ds.graphs.size());
  const std::vector<float> none;
  for (int64_t gi = 0; gi < ds.size(); ++gi) {
    check_dims(ds, gi, "save_graph_cache");
    const Graph& g = ds.graphs[gi];
    w.put<int64_t>(g.num_nodes);
    w.put<double>(g.y);
    w.vec(g.edge_src);
    w.vec(g.edge_dst);
    w.vec(g.node_cat);
    w.vec(g.node_attr);
    w.vec(g.edge_cat);
    w.vec(ds.rwse_steps ? g.rwse : none);  // stale encodings of a data set without them: dropped
    w.vec(ds.lappe_dim ? g.lap_vec : none);
    w.vec(ds.lappe_dim ? g.lap_val : none);
  }
  w.put<uint64_t>(ds.splits.size());
  for (const auto& [name, v] : ds.splits) {
    w.str(name);
    w.vec(v);
  }
  write_file_atomic(path, w.bytes());
}

GraphDataset load_graph_cache(const std::string& path) {
  const std::string bytes = read_file(path);
  Reader r(path, bytes);
  PARE_CHECK(bytes.size() >= sizeof kMagic && std::memcmp(bytes.data(), kMagic, sizeof kMagic) == 0,
             path, ": offset 0: expected magic \"PAREGRPH\" (a pare graph cache), got ",
             bytes.size() < sizeof kMagic ? "a shorter file" : "other bytes");
  r.get<uint64_t>("magic");
  {
    const size_t at = r.offset();
    const uint32_t v = r.get<uint32_t>("version");
    PARE_CHECK(v == kVersion, path, ": offset ", at, ": expected cache version ", kVersion, ", got ",
               v, " (delete the cache to rebuild it)");
  }
  GraphDataset ds;
  ds.name = r.str("name");
  {
    const size_t at = r.offset();
    ds.task = r.str("task");
    PARE_CHECK(ds.task == "classification" || ds.task == "binary" || ds.task == "regression", path,
               ": offset ", at, ": expected task classification, binary or regression, got '",
               ds.task, "'");
  }
  int64_t* dims[] = {&ds.num_classes, &ds.node_cat_dims, &ds.node_attr_dims, &ds.edge_cat_dims,
                     &ds.rwse_steps,  &ds.lappe_dim};
  for (int64_t* d : dims) {
    const size_t at = r.offset();
    *d = r.get<int64_t>("dimension");
    PARE_CHECK(*d >= 0 && *d < (int64_t(1) << 31), path, ": offset ", at,
               ": expected a dimension in 0..2^31-1, got ", *d, " (corrupt cache)");
  }
  ds.node_vocab = r.vec_of<int64_t>("node_vocab", ds.node_cat_dims, "one size per categorical node feature");
  ds.edge_vocab = r.vec_of<int64_t>("edge_vocab", ds.edge_cat_dims, "one size per categorical edge feature");
  const int64_t Fc = ds.node_cat_dims, Fd = ds.node_attr_dims, Fe = ds.edge_cat_dims;
  const int64_t K = ds.rwse_steps, k = ds.lappe_dim;
  // Each graph takes at least num_nodes, y and eight counts: 80 bytes.
  const uint64_t G = r.count("graph", 80);
  size_t at = 0;
  ds.graphs.resize(G);
  for (uint64_t gi = 0; gi < G; ++gi) {
    Graph& g = ds.graphs[gi];
    at = r.offset();
    g.num_nodes = r.get<int64_t>("num_nodes");
    // A graph's nodes need no bytes of their own when it has no features, so bound n by the
    // dimensions' product only; 2^31 keeps n × dims from overflowing.
    PARE_CHECK(g.num_nodes >= 0 && g.num_nodes < (int64_t(1) << 31), path, ": offset ", at,
               ": graph ", gi, ": expected num_nodes in 0..2^31-1, got ", g.num_nodes, " (corrupt cache)");
    const uint64_t n = g.num_nodes;
    at = r.offset();
    g.y = r.get<double>("y");
    if (ds.task == "classification")
      PARE_CHECK(g.y >= 0 && g.y < ds.num_classes && g.y == std::floor(g.y), path, ": offset ", at,
                 ": graph ", gi, ": expected a class index in 0..", ds.num_classes - 1, ", got ", g.y,
                 " (corrupt cache)");
    at = r.offset();
    g.edge_src = r.vec<int64_t>("edge_src");
    const uint64_t m = g.edge_src.size();
    const size_t at_dst = r.offset();
    g.edge_dst = r.vec_of<int64_t>("edge_dst", m, "as many targets as sources");
    for (uint64_t e = 0; e < m; ++e)
      PARE_CHECK(g.edge_src[e] >= 0 && g.edge_src[e] < g.num_nodes && g.edge_dst[e] >= 0 &&
                     g.edge_dst[e] < g.num_nodes,
                 path, ": offset ", g.edge_src[e] >= 0 && g.edge_src[e] < g.num_nodes ? at_dst : at,
                 ": graph ", gi, ": edge ", e, " (", g.edge_src[e], " -> ", g.edge_dst[e],
                 ") expected node ids in 0..", g.num_nodes - 1, " (corrupt cache)");
    at = r.offset();
    g.node_cat = r.vec_of<int64_t>("node_cat", n * Fc, "num_nodes × node_cat_dims");
    check_categories(r, at, "node_cat", g.node_cat, ds.node_vocab);
    g.node_attr = r.vec_of<float>("node_attr", n * Fd, "num_nodes × node_attr_dims");
    at = r.offset();
    g.edge_cat = r.vec_of<int64_t>("edge_cat", m * Fe, "edges × edge_cat_dims");
    check_categories(r, at, "edge_cat", g.edge_cat, ds.edge_vocab);
    g.rwse = r.vec_of<float>("rwse", n * K, "num_nodes × rwse_steps");
    g.lap_vec = r.vec_of<float>("lap_vec", n * k, "num_nodes × lappe_dim");
    g.lap_val = r.vec_of<float>("lap_val", k, "lappe_dim");
  }
  const uint64_t S = r.count("split", 16);
  for (uint64_t s = 0; s < S; ++s) {
    std::string name = r.str("split name");
    at = r.offset();
    std::vector<int64_t> v = r.vec<int64_t>("split");
    for (size_t i = 0; i < v.size(); ++i)
      PARE_CHECK(v[i] >= 0 && v[i] < static_cast<int64_t>(G) && (i == 0 || v[i] > v[i - 1]), path,
                 ": offset ", at, ": split '", name, "': expected sorted distinct graph indices in 0..",
                 static_cast<int64_t>(G) - 1, ", got ", v[i], " at position ", i, " (corrupt cache)");
    ds.splits[name] = std::move(v);
  }
  PARE_CHECK(r.left() == 0, path, ": offset ", r.offset(), ": expected end of file, got ", r.left(),
             " more bytes (corrupt cache)");
  return ds;
}

}  // namespace pare
