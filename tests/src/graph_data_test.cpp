// Graph data: the TUDataset reader on the shared data sets (counts checked against shell counts of
// the files) and on small broken files, seeded splits, RWSE and LapPE against hand-computed values,
// collate's PyG conventions and the binary cache.
#include "data/graph_data.h"

#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "base/fileio.h"
#include "test_util.h"

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using pare::Graph;
using pare::GraphDataset;
using pare_test::TempDir;

// Shared TU data folders; empty when the shared data is not there (the test then skips).
std::string shared(const std::string& rel) {
  const char* e = std::getenv("PARE_SHARED_DATA");
  if (!e || !*e) return "";
  const std::string p = std::string(e) + "/" + rel;
  return std::filesystem::is_directory(p) ? p : "";
}

#define SHARED_OR_SKIP(var, rel)                                           \
  const std::string var = shared(rel);                                     \
  if (var.empty()) GTEST_SKIP() << "shared data folder " << rel << " not found (PARE_SHARED_DATA)"

int64_t total_nodes(const GraphDataset& ds) {
  int64_t n = 0;
  for (const auto& g : ds.graphs) n += g.num_nodes;
  return n;
}
int64_t total_edges(const GraphDataset& ds) {
  int64_t n = 0;
  for (const auto& g : ds.graphs) n += g.num_edges();
  return n;
}
// Graphs per class (empty for regression).
std::vector<int64_t> class_counts(const GraphDataset& ds) {
  std::vector<int64_t> c(ds.num_classes, 0);
  if (ds.task != "classification") return c;
  for (const auto& g : ds.graphs) ++c.at(static_cast<int64_t>(g.y));
  return c;
}

// A graph from an undirected edge list, both directions stored (PyG convention).
Graph undirected(int64_t n, const std::vector<std::pair<int64_t, int64_t>>& edges) {
  Graph g;
  g.num_nodes = n;
  for (auto [a, b] : edges) {
    g.edge_src.push_back(a);
    g.edge_dst.push_back(b);
    g.edge_src.push_back(b);
    g.edge_dst.push_back(a);
  }
  return g;
}
Graph path3() { return undirected(3, {{0, 1}, {1, 2}}); }
Graph cycle4() { return undirected(4, {{0, 1}, {1, 2}, {2, 3}, {3, 0}}); }
Graph star3() { return undirected(4, {{0, 1}, {0, 2}, {0, 3}}); }

// RWSE row of node i ([n × K] row-major).
std::vector<float> row(const std::vector<float>& t, int64_t i, int64_t K) {
  return std::vector<float>(t.begin() + i * K, t.begin() + (i + 1) * K);
}
void expect_row(const std::vector<float>& t, int64_t i, const std::vector<double>& want) {
  const int64_t K = static_cast<int64_t>(want.size());
  const auto got = row(t, i, K);
  for (int64_t k = 0; k < K; ++k) EXPECT_NEAR(got[k], want[k], 1e-6) << "node " << i << " step " << k + 1;
}

// ---------------------------------------------------------------------------------------------
// Reader on the shared data sets. Every expected count below was obtained from the files with shell
// tools, independently of the parser:
//   nodes  = wc -l NAME_graph_indicator.txt      edges = wc -l NAME_A.txt (directed entries)
//   graphs = sort -u NAME_graph_indicator.txt | wc -l  (= wc -l NAME_graph_labels.txt)
//   classes: sort NAME_graph_labels.txt | uniq -c;  vocab: sort -u NAME_node_labels.txt | wc -l
//   max nodes per graph: uniq -c NAME_graph_indicator.txt | sort -n | tail -1
//   attribute columns: awk -F, '{print NF}' NAME_node_attributes.txt | sort -u

// What the shell counts say about one data set.
struct Counts {
  int64_t graphs, nodes, edges, max_nodes;
  std::vector<int64_t> classes;  // graphs per class (empty: regression)
  std::vector<int64_t> node_vocab, edge_vocab;
  int64_t attr_dims;
};

void expect_counts(const GraphDataset& ds, const Counts& c) {
  EXPECT_EQ(ds.size(), c.graphs);
  EXPECT_EQ(total_nodes(ds), c.nodes);
  EXPECT_EQ(total_edges(ds), c.edges);
  EXPECT_EQ(pare::graph_stats(ds).max_nodes, c.max_nodes);
  EXPECT_EQ(ds.task, c.classes.empty() ? "regression" : "classification");
  EXPECT_EQ(ds.num_classes, static_cast<int64_t>(c.classes.size()));
  EXPECT_EQ(class_counts(ds), c.classes);
  EXPECT_EQ(ds.node_cat_dims, static_cast<int64_t>(c.node_vocab.size()));
  EXPECT_EQ(ds.node_vocab, c.node_vocab);
  EXPECT_EQ(ds.edge_cat_dims, static_cast<int64_t>(c.edge_vocab.size()));
  EXPECT_EQ(ds.edge_vocab, c.edge_vocab);
  EXPECT_EQ(ds.node_attr_dims, c.attr_dims);
}

TEST(GraphTu, MutagCounts) {
  SHARED_OR_SKIP(dir, "tudatasets/MUTAG");
  const GraphDataset ds = pare::load_tu_dataset(dir);
  EXPECT_EQ(ds.name, "MUTAG");
  // Labels -1 (63 graphs) and 1 (125 graphs) become classes 0 and 1; node labels 0..6, edge
  // labels 0..3.
  expect_counts(ds, {188, 3371, 7442, 28, {63, 125}, {7}, {4}, 0});
  EXPECT_EQ(ds.graphs[0].y, 1.0);  // line 1 of MUTAG_graph_labels.txt: 1
  // Graph 1: grep -c '^1$' MUTAG_graph_indicator.txt = 17 nodes; awk -F, '$1<=17' MUTAG_A.txt
  // | wc -l = 38 edges. Its first A line is "2, 1".
  EXPECT_EQ(ds.graphs[0].num_nodes, 17);
  EXPECT_EQ(ds.graphs[0].num_edges(), 38);
  EXPECT_EQ(ds.graphs[0].edge_src[0], 1);
  EXPECT_EQ(ds.graphs[0].edge_dst[0], 0);
  EXPECT_EQ(ds.graphs[0].edge_cat.size(), 38u);
}

TEST(GraphTu, Nci1CountsWithCommaOnlySeparator) {
  SHARED_OR_SKIP(dir, "tudatasets/NCI1");  // NCI1_A.txt lines read "8,1"
  // Labels 0 and 1; node labels 1..37; no edge labels.
  expect_counts(pare::load_tu_dataset(dir), {4110, 122747, 265506, 111, {2053, 2057}, {37}, {}, 0});
}

TEST(GraphTu, ProteinsCountsAndAttributes) {
  SHARED_OR_SKIP(dir, "tudatasets/PROTEINS");
  const GraphDataset ds = pare::load_tu_dataset(dir);
  expect_counts(ds, {1113, 43471, 162088, 620, {663, 450}, {3}, {}, 1});  // labels 1 and 2
  EXPECT_EQ(ds.graphs[0].node_attr[0], 23.0f);  // line 1 of PROTEINS_node_attributes.txt: " 23.000000"
}

TEST(GraphTu, EnzymesCountsAndAttributes) {
  SHARED_OR_SKIP(dir, "tudatasets/ENZYMES");
  const GraphDataset ds = pare::load_tu_dataset(dir);
  expect_counts(ds, {600, 19580, 74564, 126, std::vector<int64_t>(6, 100), {3}, {}, 18});  // labels 1..6
  // Line 1 of ENZYMES_node_attributes.txt: " 11.000000, 15.887014, 37.780000, -0.510000, ..."
  EXPECT_FLOAT_EQ(ds.graphs[0].node_attr[0], 11.0f);
  EXPECT_FLOAT_EQ(ds.graphs[0].node_attr[1], 15.887014f);
  EXPECT_FLOAT_EQ(ds.graphs[0].node_attr[3], -0.51f);
}

TEST(GraphTu, ZincRegressionFromGraphAttributes) {
  SHARED_OR_SKIP(dir, "zinc/subset_tu");
  const GraphDataset ds = pare::load_tu_dataset(dir, "ZINC_test");
  EXPECT_EQ(ds.name, "ZINC_test");
  // Atom types 0..16 occur in the test split (0..15 in val); bond types 1..3 → 0..2.
  expect_counts(ds, {1000, 23117, 49720, 37, {}, {17}, {3}, 0});
  EXPECT_DOUBLE_EQ(ds.graphs[0].y, 1.9973257780075073);  // line 1 of ZINC_test_graph_attributes.txt
  EXPECT_DOUBLE_EQ(ds.graphs[1].y, 0.6860389113426208);
  expect_counts(pare::load_tu_dataset(dir, "ZINC_val"), {1000, 23083, 49692, 36, {}, {16}, {3}, 0});
}

// ---------------------------------------------------------------------------------------------
// Reader on small hand-written files.

// TU files by suffix ("A", "graph_indicator", ...) → content.
using TuFiles = std::map<std::string, std::string>;

// Writes the files of `f` as NAME_SUFFIX.txt into `dir`.
void write_tu(const std::string& dir, const std::string& name, const TuFiles& f) {
  for (const auto& [suffix, text] : f) pare_test::write_bytes(dir + "/" + name + "_" + suffix + ".txt", text);
}

// Two graphs: a triangle (nodes 1-3) and an edge (nodes 4-5), both directions listed, with
// "i, j", "i,j" and "i , j" separators.
TuFiles good_files() {
  return {{"A", "1, 2\n2, 1\n2,3\n3,2\n1 , 3\n3, 1\n4, 5\n5, 4\n"},
          {"graph_indicator", "1\n1\n1\n2\n2\n"},
          {"graph_labels", "7\n3\n"},
          {"node_labels", "5\n9\n5\n2\n9\n"},
          {"edge_labels", "1\n1\n2\n2\n1\n1\n3\n3\n"},
          {"node_attributes", "0.5, 1\n1.5, 2\n2.5, 3\n3.5, 4\n4.5, 5\n"}};
}

TEST(GraphTu, SmallFilesBothSeparatorsAndRemapping) {
  TempDir dir;
  write_tu(dir.path(), "T", good_files());
  const GraphDataset ds = pare::load_tu_dataset(dir.path(), "T");
  ASSERT_EQ(ds.size(), 2);
  EXPECT_EQ(ds.graphs[0].num_nodes, 3);
  EXPECT_EQ(ds.graphs[1].num_nodes, 2);
  EXPECT_EQ(ds.graphs[0].edge_src, (std::vector<int64_t>{0, 1, 1, 2, 0, 2}));
  EXPECT_EQ(ds.graphs[0].edge_dst, (std::vector<int64_t>{1, 0, 2, 1, 2, 0}));
  EXPECT_EQ(ds.graphs[1].edge_src, (std::vector<int64_t>{0, 1}));  // local ids: node 4 → 0
  EXPECT_EQ(ds.graphs[1].edge_dst, (std::vector<int64_t>{1, 0}));
  // Graph labels 7, 3 → sorted distinct {3, 7} → classes 1, 0.
  EXPECT_EQ(ds.task, "classification");
  EXPECT_EQ(ds.num_classes, 2);
  EXPECT_EQ(ds.graphs[0].y, 1.0);
  EXPECT_EQ(ds.graphs[1].y, 0.0);
  // Node labels {2, 5, 9} → 0, 1, 2.
  EXPECT_EQ(ds.node_vocab, std::vector<int64_t>{3});
  EXPECT_EQ(ds.graphs[0].node_cat, (std::vector<int64_t>{1, 2, 1}));
  EXPECT_EQ(ds.graphs[1].node_cat, (std::vector<int64_t>{0, 2}));
  // Edge labels {1, 2, 3} → 0, 1, 2, in A's order.
  EXPECT_EQ(ds.edge_vocab, std::vector<int64_t>{3});
  EXPECT_EQ(ds.graphs[0].edge_cat, (std::vector<int64_t>{0, 0, 1, 1, 0, 0}));
  EXPECT_EQ(ds.graphs[1].edge_cat, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ds.node_attr_dims, 2);
  EXPECT_EQ(ds.graphs[1].node_attr, (std::vector<float>{3.5f, 4, 4.5f, 5}));
  // The default name is the folder's last component (a trailing '/', "/." or "X/.." is fine).
  TempDir dir2;
  const std::string sub = dir2.file("TINY");
  std::filesystem::create_directory(sub);
  write_tu(sub, "TINY", good_files());
  EXPECT_EQ(pare::load_tu_dataset(sub + "/").name, "TINY");
  EXPECT_EQ(pare::load_tu_dataset(sub + "/.").name, "TINY");
  EXPECT_EQ(pare::load_tu_dataset(sub + "/../TINY").name, "TINY");
}

TEST(GraphTu, FloatLabelsGiveRegression) {
  TempDir dir;
  TuFiles f = good_files();
  f["graph_labels"] = "0.25\n-3\n";
  write_tu(dir.path(), "T", f);
  const GraphDataset ds = pare::load_tu_dataset(dir.path(), "T");
  EXPECT_EQ(ds.task, "regression");
  EXPECT_EQ(ds.num_classes, 0);
  EXPECT_EQ(ds.graphs[0].y, 0.25);
  EXPECT_EQ(ds.graphs[1].y, -3.0);
}

TEST(GraphTu, ZeroEdgeAndSingleNodeGraphsWork) {
  // Graph 1: one node; graph 2: three nodes, no edges; graph 3: two nodes, one edge pair.
  TempDir dir;
  write_tu(dir.path(), "Z",
           {{"A", "5, 6\n6, 5\n"}, {"graph_indicator", "1\n2\n2\n2\n3\n3\n"}, {"graph_labels", "0\n1\n0\n"}});
  GraphDataset ds = pare::load_tu_dataset(dir.path(), "Z");
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.graphs[0].num_nodes, 1);
  EXPECT_EQ(ds.graphs[0].num_edges(), 0);
  EXPECT_EQ(ds.graphs[1].num_edges(), 0);
  EXPECT_EQ(ds.graphs[2].edge_src, (std::vector<int64_t>{0, 1}));
  pare::compute_rwse(ds, 3);
  pare::compute_lappe(ds, 2);
  // Isolated nodes: RWSE 0; L = I: eigenvalue 1 (padded with 0 for the single node).
  EXPECT_EQ(ds.graphs[0].rwse, std::vector<float>(3, 0.0f));
  EXPECT_EQ(ds.graphs[1].rwse, std::vector<float>(9, 0.0f));
  EXPECT_EQ(ds.graphs[0].lap_val, (std::vector<float>{1, 0}));
  EXPECT_EQ(ds.graphs[0].lap_vec, (std::vector<float>{1, 0}));
  EXPECT_EQ(ds.graphs[1].lap_val, (std::vector<float>{1, 1}));
  const pare::GraphBatch b = pare::collate(ds, {0, 1, 2});
  EXPECT_EQ(b.num_nodes(), 6);
  EXPECT_TRUE(torch::equal(b.edge_index, torch::tensor({4, 5, 5, 4}, torch::kInt64).view({2, 2})));
  EXPECT_TRUE(torch::equal(b.ptr, torch::tensor({0, 1, 4, 6}, torch::kInt64)));
  EXPECT_FALSE(b.node_cat.defined());
  const pare::GraphBatch empty = pare::collate(ds, {1});
  EXPECT_EQ(empty.edge_index.sizes(), (std::vector<int64_t>{2, 0}));
}

// Bad input: one test per case (one file of good_files() replaced, or removed); each message names
// the file and the 1-based line.
struct BadTu {
  std::string name;                // test name
  std::string file;                // suffix of the file replaced
  std::optional<std::string> text; // its new content; nullopt: the file is removed
  std::vector<std::string> parts;  // the InputError message contains each
};

const BadTu kBadTu[] = {
    {"EdgePastNodeCount", "A", "1, 2\n2, 1\n2, 3\n3, 2\n1, 3\n3, 1\n4, 6\n5, 4\n",
     {"B_A.txt: line 7:", "1..5", "'4, 6'"}},
    {"NodeIdBelowOne", "A", "1, 2\n0, 1\n", {"B_A.txt: line 2:", "1..5", "'0, 1'"}},
    {"EdgeCrossesGraphs", "A", "1, 2\n2, 1\n3, 4\n",
     {"B_A.txt: line 3:", "node 3 in graph 1", "node 4 in graph 2"}},
    {"TooFewGraphLabels", "graph_labels", "1\n",
     {"B_graph_labels.txt: line 2:", "got end of file", "2 graphs"}},
    {"TooManyGraphLabels", "graph_labels", "1\n0\n1\n",
     {"B_graph_labels.txt: line 3:", "expected end of file", "2 graphs"}},
    {"TooFewNodeLabels", "node_labels", "1\n2\n3\n4\n", {"B_node_labels.txt: line 5:", "5 nodes"}},
    {"TooManyAttributeRows", "node_attributes", "0.5, 1\n1.5, 2\n2.5, 3\n3.5, 4\n4.5, 5\n5.5, 6\n",
     {"B_node_attributes.txt: line 6:", "expected end of file", "5 nodes"}},
    {"AttributeColumnsDisagree", "node_attributes", "0.5, 1\n1.5\n2.5, 3\n3.5, 4\n4.5, 5\n",
     {"B_node_attributes.txt: line 2:", "expected 2"}},
    {"TooFewEdgeLabels", "edge_labels", "1\n1\n2\n", {"B_edge_labels.txt: line 4:", "8 edges"}},
    {"IndicatorSkipsGraph", "graph_indicator", "1\n1\n1\n3\n3\n",
     {"B_graph_indicator.txt: line 4:", "graph 2 would have no nodes"}},
    {"IndicatorStartsAfterOne", "graph_indicator", "2\n2\n2\n3\n3\n",
     {"B_graph_indicator.txt: line 1:", "graph 1 would have no nodes"}},
    {"IndicatorNotContiguous", "graph_indicator", "1\n1\n2\n1\n2\n",
     {"B_graph_indicator.txt: line 4:", "must not decrease"}},
    {"MalformedEdgeLine", "A", "1, 2\n2 1\n", {"B_A.txt: line 2: expected two integer node ids", "'2 1'"}},
    {"BlankLineInside", "A", "1, 2\n\n2, 1\n", {"B_A.txt: line 2:", "got ''"}},
    {"NonIntegerNodeLabel", "node_labels", "5\n9\nC\n2\n9\n", {"B_node_labels.txt: line 3:", "'C'"}},
    {"NonNumericGraphLabel", "graph_labels", "1\nyes\n", {"B_graph_labels.txt: line 2:", "'yes'"}},
    {"MalformedIndicator", "graph_indicator", "1\n1\n1\n2\n2x\n", {"B_graph_indicator.txt: line 5:", "'2x'"}},
    {"MissingA", "A", std::nullopt, {"B_A.txt", "not found"}},
    {"MissingIndicator", "graph_indicator", std::nullopt, {"B_graph_indicator.txt", "not found"}},
    {"MissingGraphLabels", "graph_labels", std::nullopt, {"B_graph_labels.txt", "not found"}},
};

class GraphTuBadInput : public ::testing::TestWithParam<BadTu> {};

TEST_P(GraphTuBadInput, NamesFileAndLine) {
  const BadTu& c = GetParam();
  TuFiles f = good_files();
  if (c.text)
    f[c.file] = *c.text;
  else
    f.erase(c.file);
  TempDir dir;
  write_tu(dir.path(), "B", f);
  const std::string msg = pare_test::input_error_message([&] { pare::load_tu_dataset(dir.path(), "B"); });
  for (const auto& part : c.parts) EXPECT_THAT(msg, HasSubstr(part));
}

INSTANTIATE_TEST_SUITE_P(GraphTu, GraphTuBadInput, ::testing::ValuesIn(kBadTu),
                         [](const ::testing::TestParamInfo<BadTu>& i) { return i.param.name; });

TEST(GraphTu, MissingFolderOrWrongName) {
  TempDir dir;
  write_tu(dir.path(), "B", good_files());
  EXPECT_INPUT_ERROR(pare::load_tu_dataset(dir.path(), "WRONGNAME"),
                     AllOf(HasSubstr("WRONGNAME_graph_indicator.txt"), HasSubstr("not found")));
  EXPECT_INPUT_ERROR(pare::load_tu_dataset(dir.file("nope")), HasSubstr("folder not found"));
}

// ---------------------------------------------------------------------------------------------

GraphDataset synthetic(int64_t n) {
  GraphDataset ds;
  ds.name = "synthetic";
  ds.task = "regression";
  for (int64_t i = 0; i < n; ++i) {
    Graph g = undirected(i % 4 + 1, {});
    g.y = static_cast<double>(i);
    ds.graphs.push_back(g);
  }
  return ds;
}

TEST(GraphSplit, SeededDisjointSortedCover) {
  GraphDataset ds = synthetic(100);
  pare::random_split(ds, 0.8, 0.1, 7);
  const auto tr = ds.splits.at("train"), va = ds.splits.at("valid"), te = ds.splits.at("test");
  EXPECT_EQ(tr.size(), 80u);
  EXPECT_EQ(va.size(), 10u);
  EXPECT_EQ(te.size(), 10u);
  for (const auto* v : {&tr, &va, &te}) EXPECT_TRUE(std::is_sorted(v->begin(), v->end()));
  std::set<int64_t> all(tr.begin(), tr.end());
  all.insert(va.begin(), va.end());
  all.insert(te.begin(), te.end());
  EXPECT_EQ(all.size(), 100u);
  EXPECT_EQ(*all.begin(), 0);
  EXPECT_EQ(*all.rbegin(), 99);
  GraphDataset again = synthetic(100);
  pare::random_split(again, 0.8, 0.1, 7);
  EXPECT_EQ(again.splits, ds.splits);
  pare::random_split(again, 0.8, 0.1, 8);
  EXPECT_NE(again.splits.at("train"), tr);
  // Not simply the first 80 indices.
  EXPECT_NE(tr.back(), 79);
  EXPECT_INPUT_ERROR(pare::random_split(ds, 0.8, 0.3, 1), HasSubstr("train + valid <= 1"));
  EXPECT_INPUT_ERROR(pare::random_split(ds, -0.1, 0.3, 1), HasSubstr("non-negative"));
}

// ---------------------------------------------------------------------------------------------
// RWSE, K = 4, against hand-computed landing probabilities (P = D⁻¹A, entry (i, i) of P^k).

TEST(GraphRwse, Path3ByHand) {
  // 0-1-2: P = [[0,1,0],[1/2,0,1/2],[0,1,0]].
  // End node 0: k=1 no self-loop → 0; k=2 0→1→0 = 1·1/2 = 1/2; k odd → 0 (bipartite);
  //   P² = [[1/2,0,1/2],[0,1,0],[1/2,0,1/2]], P⁴ = (P²)², entry (0,0) = 1/4 + 1/4 = 1/2.
  // Middle node 1: k=2 1→0→1 + 1→2→1 = 1/2·1 + 1/2·1 = 1; k=4 (P²)² entry (1,1) = 1.
  const auto r = pare::rwse(path3(), 4);
  ASSERT_EQ(r.size(), 12u);
  expect_row(r, 0, {0, 0.5, 0, 0.5});
  expect_row(r, 1, {0, 1, 0, 1});
  expect_row(r, 2, {0, 0.5, 0, 0.5});
}

TEST(GraphRwse, Cycle4ByHand) {
  // Every node has degree 2: a step goes ±1 around the cycle with probability 1/2.
  // k=2: back via either neighbour: 2 · 1/4 = 1/2. k odd: 0 (bipartite).
  // k=4: 16 equally likely ±1 sequences; return when the sum is 0 mod 4: sum 0 → C(4,2) = 6,
  //      sum ±4 → 2; 8/16 = 1/2.
  const auto r = pare::rwse(cycle4(), 4);
  for (int64_t i = 0; i < 4; ++i) expect_row(r, i, {0, 0.5, 0, 0.5});
}

TEST(GraphRwse, Star3ByHand) {
  // Centre 0 goes to each leaf with 1/3, a leaf always goes back to the centre.
  // Centre: k=2 Σ_leaves 1/3·1 = 1; k=4: back at the centre after every 2 steps = 1.
  // Leaf:   k=2 1·1/3 = 1/3 (centre then the same leaf); k=4: leaf→c→any→c→same leaf = 1/3.
  const auto r = pare::rwse(star3(), 4);
  expect_row(r, 0, {0, 1, 0, 1});
  for (int64_t i = 1; i < 4; ++i) expect_row(r, i, {0, 1.0 / 3, 0, 1.0 / 3});
}

TEST(GraphRwse, DirectedDuplicatesSelfLoopsIsolated) {
  // Edges as given: 0→1 twice, 0→2, 1→0, 2→0, 3→3 (self-loop); node 4 isolated.
  // deg(0) = 3: P[0,1] = 2/3, P[0,2] = 1/3; P[1,0] = P[2,0] = 1; P[3,3] = 1.
  // k=1: only node 3 returns (1). k=2: node 0: 2/3·1 + 1/3·1 = 1; node 1: 1·2/3; node 2: 1·1/3;
  // node 3: 1. Node 4: no out-edges → row 0.
  Graph g;
  g.num_nodes = 5;
  g.edge_src = {0, 0, 0, 1, 2, 3};
  g.edge_dst = {1, 1, 2, 0, 0, 3};
  const auto r = pare::rwse(g, 2);
  expect_row(r, 0, {0, 1});
  expect_row(r, 1, {0, 2.0 / 3});
  expect_row(r, 2, {0, 1.0 / 3});
  expect_row(r, 3, {1, 1});
  expect_row(r, 4, {0, 0});
  // A purely directed edge: 0→1 only. Node 0 never returns, node 1 has no out-degree.
  Graph d;
  d.num_nodes = 2;
  d.edge_src = {0};
  d.edge_dst = {1};
  EXPECT_EQ(pare::rwse(d, 3), std::vector<float>(6, 0.0f));
  EXPECT_INPUT_ERROR(pare::rwse(g, 0), HasSubstr("K >= 1"));
  g.edge_dst[0] = 5;
  EXPECT_INPUT_ERROR(pare::rwse(g, 2), HasSubstr("node ids in 0..4"));
}

TEST(GraphRwse, MatchesTorchMatrixPowerOnMutag) {
  SHARED_OR_SKIP(dir, "tudatasets/MUTAG");
  GraphDataset ds = pare::load_tu_dataset(dir);
  const int64_t K = 8;
  pare::compute_rwse(ds, K);
  EXPECT_EQ(ds.rwse_steps, K);
  for (int64_t gi = 0; gi < ds.size(); gi += 17) {
    const Graph& g = ds.graphs[gi];
    const int64_t n = g.num_nodes;
    auto A = torch::zeros({n, n}, torch::kFloat64);
    for (int64_t e = 0; e < g.num_edges(); ++e) A[g.edge_src[e]][g.edge_dst[e]] += 1.0;
    const auto P = A / A.sum(1, true).clamp_min(1.0);
    const auto got = torch::tensor(g.rwse).view({n, K}).to(torch::kFloat64);
    for (int64_t k = 1; k <= K; ++k)
      EXPECT_LT(pare_test::max_abs_diff(got.select(1, k - 1), torch::matrix_power(P, k).diagonal()), 1e-6)
          << "graph " << gi << " k " << k;
  }
}

// ---------------------------------------------------------------------------------------------
// LapPE: L = I − D^-1/2 A D^-1/2.

// The Laplacian built independently of the implementation (dense, A symmetrised, no self-loops).
torch::Tensor laplacian(const Graph& g) {
  const int64_t n = g.num_nodes;
  auto A = torch::zeros({n, n}, torch::kFloat64);
  for (int64_t e = 0; e < g.num_edges(); ++e)
    if (g.edge_src[e] != g.edge_dst[e]) {
      A[g.edge_src[e]][g.edge_dst[e]] = 1.0;
      A[g.edge_dst[e]][g.edge_src[e]] = 1.0;
    }
  auto d = A.sum(1);
  auto dinv = torch::where(d > 0, d.pow(-0.5), torch::zeros_like(d));
  return torch::eye(n, torch::kFloat64) - dinv.unsqueeze(1) * A * dinv.unsqueeze(0);
}

// Checks basis-independent properties: L v = λ v for each kept column, columns orthonormal,
// the sign convention (first entry with |v| > 1e-6 positive), eigenvalues ascending.
void expect_eigenpairs(const Graph& g, const std::vector<float>& vec, const std::vector<float>& val,
                       int64_t k) {
  const int64_t n = g.num_nodes, m = std::min(n, k);
  const auto L = laplacian(g);
  const auto V = torch::tensor(vec).view({n, k}).to(torch::kFloat64).narrow(1, 0, m);
  const auto lam = torch::tensor(val).to(torch::kFloat64).narrow(0, 0, m);
  EXPECT_LT(pare_test::max_abs_diff(L.matmul(V), V * lam.unsqueeze(0)), 1e-5);
  EXPECT_LT(pare_test::max_abs_diff(V.t().matmul(V), torch::eye(m, torch::kFloat64)), 1e-5);
  for (int64_t c = 0; c < m; ++c) {
    for (int64_t i = 0; i < n; ++i)
      if (std::abs(vec[i * k + c]) > 1e-6) {
        EXPECT_GT(vec[i * k + c], 0) << "column " << c;
        break;
      }
    if (c > 0) {
      EXPECT_LE(val[c - 1], val[c] + 1e-6);
    }
  }
}

// Runs lappe(g, k = want_val.size()), checks the eigenvalues against the hand values and the
// eigenpair properties, and returns vec ([n × k], rows are nodes, columns eigenvectors).
std::vector<float> lappe_checked(const Graph& g, const std::vector<double>& want_val) {
  const int64_t k = static_cast<int64_t>(want_val.size());
  std::vector<float> vec, val;
  pare::lappe(g, k, vec, val);
  for (int64_t c = 0; c < k; ++c) EXPECT_NEAR(val[c], want_val[c], 1e-6) << "eigenvalue " << c;
  expect_eigenpairs(g, vec, val, k);
  return vec;
}

TEST(GraphLapPE, Path3ByHand) {
  // deg (1, 2, 1); D^-1/2 A D^-1/2 has 1/√2 on the two edges, eigenvalues 1, 0, −1 → L: 0, 1, 2.
  // λ=0: v ∝ √deg = (1, √2, 1), norm 2 → (1/2, √2/2, 1/2).
  // λ=1: (N v = 0) v = (1, 0, −1)/√2, first entry positive.
  // λ=2: (N v = −v) v = (1, −√2, 1)/2.
  const auto vec = lappe_checked(path3(), {0, 1, 2});
  const double h = 0.5, r = std::sqrt(0.5);
  const std::vector<std::vector<double>> cols = {{h, r, h}, {r, 0, -r}, {h, -r, h}};  // per eigenvector
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_NEAR(vec[i * 3 + c], cols[c][i], 1e-6) << "node " << i << " col " << c;
}

TEST(GraphLapPE, Cycle4Degenerate) {
  // L = I − A/2; A's eigenvalues on C4 are 2, 0, 0, −2 → λ = 0, 1, 1, 2. λ=1 is degenerate: only
  // the eigen-equation and orthonormality are checked there. λ=0 → (1,1,1,1)/2,
  // λ=2 → (1,−1,1,−1)/2 (first entry positive).
  const auto vec = lappe_checked(cycle4(), {0, 1, 1, 2});
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(vec[i * 4 + 0], 0.5, 1e-6);
    EXPECT_NEAR(vec[i * 4 + 3], i % 2 ? -0.5 : 0.5, 1e-6);
  }
}

TEST(GraphLapPE, Star3Degenerate) {
  // Centre deg 3, leaves deg 1; N = D^-1/2 A D^-1/2 has 1/√3 on the spokes, eigenvalues ±1, 0, 0
  // → λ = 0, 1, 1, 2. λ=0: v ∝ √deg = (√3, 1, 1, 1)/√6 = (1/√2, 1/√6, 1/√6, 1/√6);
  // λ=2: (√3, −1, −1, −1)/√6. λ=1 (degenerate): centre entry 0, leaf entries sum to 0.
  const auto vec = lappe_checked(star3(), {0, 1, 1, 2});
  const double a = 1 / std::sqrt(2.0), b = 1 / std::sqrt(6.0);
  EXPECT_NEAR(vec[0 * 4 + 0], a, 1e-6);
  EXPECT_NEAR(vec[0 * 4 + 3], a, 1e-6);
  for (int64_t i = 1; i < 4; ++i) {
    EXPECT_NEAR(vec[i * 4 + 0], b, 1e-6);
    EXPECT_NEAR(vec[i * 4 + 3], -b, 1e-6);
  }
  for (int64_t c : {1, 2}) {
    EXPECT_NEAR(vec[0 * 4 + c], 0, 1e-6);
    EXPECT_NEAR(vec[1 * 4 + c] + vec[2 * 4 + c] + vec[3 * 4 + c], 0, 1e-6);
  }
}

TEST(GraphLapPE, PadsSmallGraphsWithZeros) {
  std::vector<float> vec, val;
  pare::lappe(path3(), 5, vec, val);
  ASSERT_EQ(val.size(), 5u);
  ASSERT_EQ(vec.size(), 15u);
  EXPECT_NEAR(val[2], 2, 1e-6);
  EXPECT_EQ(val[3], 0);
  EXPECT_EQ(val[4], 0);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(vec[i * 5 + 3], 0);
    EXPECT_EQ(vec[i * 5 + 4], 0);
  }
  // Fewer columns than nodes: the smallest eigenvalues.
  pare::lappe(path3(), 2, vec, val);
  EXPECT_EQ(vec.size(), 6u);
  EXPECT_NEAR(val[0], 0, 1e-6);
  EXPECT_NEAR(val[1], 1, 1e-6);
  EXPECT_NEAR(vec[1 * 2 + 0], std::sqrt(0.5), 1e-6);
  // Direction and duplicates do not matter: the Laplacian is of the undirected simple graph.
  Graph one_way;
  one_way.num_nodes = 3;
  one_way.edge_src = {0, 1, 1, 2, 2};
  one_way.edge_dst = {1, 2, 2, 2, 1};  // 0→1, 1→2 twice, a self-loop at 2, 2→1
  std::vector<float> vec2, val2;
  pare::lappe(one_way, 3, vec2, val2);
  pare::lappe(path3(), 3, vec, val);
  for (size_t i = 0; i < vec.size(); ++i) EXPECT_NEAR(vec2[i], vec[i], 1e-6);
  for (size_t i = 0; i < val.size(); ++i) EXPECT_NEAR(val2[i], val[i], 1e-6);
}

TEST(GraphLapPE, EigenpairsOnMutagAndProteins) {
  SHARED_OR_SKIP(dir, "tudatasets/MUTAG");
  GraphDataset ds = pare::load_tu_dataset(dir);
  pare::compute_lappe(ds, 8);
  EXPECT_EQ(ds.lappe_dim, 8);
  for (int64_t gi = 0; gi < ds.size(); gi += 11)
    expect_eigenpairs(ds.graphs[gi], ds.graphs[gi].lap_vec, ds.graphs[gi].lap_val, 8);
  // The largest PROTEINS graph (620 nodes): still an orthonormal eigenbasis.
  const std::string pdir = shared("tudatasets/PROTEINS");
  if (pdir.empty()) return;
  GraphDataset p = pare::load_tu_dataset(pdir);
  const Graph* big = &p.graphs[0];
  for (const auto& g : p.graphs)
    if (g.num_nodes > big->num_nodes) big = &g;
  ASSERT_EQ(big->num_nodes, 620);
  std::vector<float> vec, val;
  pare::lappe(*big, 16, vec, val);
  expect_eigenpairs(*big, vec, val, 16);
  const auto r = pare::rwse(*big, 16);
  EXPECT_EQ(r.size(), 620u * 16);
}

// ---------------------------------------------------------------------------------------------

// Two small graphs with every feature: graph A = edge 0-1 (2 nodes), graph B = path 0-1-2.
GraphDataset two_graphs() {
  GraphDataset ds;
  ds.name = "two";
  ds.task = "classification";
  ds.num_classes = 3;
  ds.node_cat_dims = 1;
  ds.node_vocab = {4};
  ds.node_attr_dims = 2;
  ds.edge_cat_dims = 1;
  ds.edge_vocab = {2};
  Graph a = undirected(2, {{0, 1}});
  a.node_cat = {3, 1};
  a.node_attr = {0.5f, 1.5f, 2.5f, 3.5f};
  a.edge_cat = {0, 1};
  a.y = 2;
  Graph b = path3();
  b.node_cat = {0, 1, 2};
  b.node_attr = {10, 11, 12, 13, 14, 15};
  b.edge_cat = {1, 1, 0, 0};
  b.y = 0;
  ds.graphs = {a, b};
  return ds;
}

TEST(GraphCollate, OffsetsBatchPtrAndFeatures) {
  GraphDataset ds = two_graphs();
  pare::GraphBatch bt = pare::collate(ds, {0, 1});
  EXPECT_EQ(bt.num_graphs, 2);
  EXPECT_EQ(bt.num_nodes(), 5);
  // Graph A's edges (0,1),(1,0); graph B's (0,1),(1,0),(1,2),(2,1) offset by A's 2 nodes.
  const auto ei = torch::tensor({0, 1, 2, 3, 3, 4, /**/ 1, 0, 3, 2, 4, 3}, torch::kInt64).view({2, 6});
  EXPECT_TRUE(torch::equal(bt.edge_index, ei)) << bt.edge_index;
  EXPECT_TRUE(torch::equal(bt.batch, torch::tensor({0, 0, 1, 1, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(bt.ptr, torch::tensor({0, 2, 5}, torch::kInt64)));
  EXPECT_EQ(bt.y.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(bt.y, torch::tensor({2, 0}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(bt.node_cat, torch::tensor({3, 1, 0, 1, 2}, torch::kInt64).view({5, 1})));
  EXPECT_EQ(bt.node_attr.sizes(), (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(bt.node_attr[2][1].item<float>(), 11.0f);
  EXPECT_TRUE(torch::equal(bt.edge_cat, torch::tensor({0, 1, 1, 1, 0, 0}, torch::kInt64).view({6, 1})));
  EXPECT_FALSE(bt.rwse.defined());
  EXPECT_FALSE(bt.lap_vec.defined());
  EXPECT_FALSE(bt.lap_val.defined());

  // Reversed order, with encodings; regression targets are float32.
  pare::compute_rwse(ds, 2);
  pare::compute_lappe(ds, 3);
  ds.task = "regression";
  ds.num_classes = 0;
  bt = pare::collate(ds, {1, 0});
  EXPECT_TRUE(torch::equal(bt.batch, torch::tensor({0, 0, 0, 1, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(bt.ptr, torch::tensor({0, 3, 5}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(bt.edge_index.select(0, 0), torch::tensor({0, 1, 1, 2, 3, 4}, torch::kInt64)));
  EXPECT_EQ(bt.y.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(bt.y, torch::tensor({0.0f, 2.0f})));
  EXPECT_EQ(bt.rwse.sizes(), (std::vector<int64_t>{5, 2}));
  EXPECT_NEAR(bt.rwse[1][1].item<float>(), 1.0f, 1e-6);  // path middle node, k = 2
  EXPECT_NEAR(bt.rwse[3][1].item<float>(), 1.0f, 1e-6);  // single edge: always back after 2 steps
  EXPECT_EQ(bt.lap_vec.sizes(), (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(bt.lap_val.sizes(), (std::vector<int64_t>{5, 3}));
  // Every node of the path carries (0, 1, 2); the 2-node graph's eigenvalues are (0, 2) + pad 0.
  for (int64_t i = 0; i < 3; ++i)
    EXPECT_LT(pare_test::max_abs_diff(bt.lap_val[i], torch::tensor({0.0f, 1.0f, 2.0f})), 1e-6);
  for (int64_t i = 3; i < 5; ++i)
    EXPECT_LT(pare_test::max_abs_diff(bt.lap_val[i], torch::tensor({0.0f, 2.0f, 0.0f})), 1e-6);
  EXPECT_INPUT_ERROR(pare::collate(ds, {2}), HasSubstr("graph index 2 outside 0..1"));
}

TEST(GraphStats, MeansAndMaxima) {
  const GraphDataset ds = two_graphs();
  const auto all = pare::graph_stats(ds);
  EXPECT_EQ(all.graphs, 2);
  EXPECT_DOUBLE_EQ(all.mean_nodes, 2.5);  // (2 + 3) / 2
  EXPECT_DOUBLE_EQ(all.mean_edges, 3.0);  // (2 + 4) / 2
  EXPECT_EQ(all.max_nodes, 3);
  EXPECT_EQ(all.max_edges, 4);
  const auto one = pare::graph_stats(ds, {0});
  EXPECT_EQ(one.graphs, 1);
  EXPECT_DOUBLE_EQ(one.mean_nodes, 2);
  EXPECT_EQ(one.max_edges, 2);
}

// ---------------------------------------------------------------------------------------------

void expect_same(const GraphDataset& a, const GraphDataset& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.num_classes, b.num_classes);
  EXPECT_EQ(a.node_cat_dims, b.node_cat_dims);
  EXPECT_EQ(a.node_attr_dims, b.node_attr_dims);
  EXPECT_EQ(a.edge_cat_dims, b.edge_cat_dims);
  EXPECT_EQ(a.node_vocab, b.node_vocab);
  EXPECT_EQ(a.edge_vocab, b.edge_vocab);
  EXPECT_EQ(a.rwse_steps, b.rwse_steps);
  EXPECT_EQ(a.lappe_dim, b.lappe_dim);
  EXPECT_EQ(a.splits, b.splits);
  ASSERT_EQ(a.size(), b.size());
  for (int64_t i = 0; i < a.size(); ++i) {
    const Graph &x = a.graphs[i], &y = b.graphs[i];
    EXPECT_EQ(x.num_nodes, y.num_nodes);
    EXPECT_EQ(x.edge_src, y.edge_src);
    EXPECT_EQ(x.edge_dst, y.edge_dst);
    EXPECT_EQ(x.node_cat, y.node_cat);
    EXPECT_EQ(x.node_attr, y.node_attr);
    EXPECT_EQ(x.edge_cat, y.edge_cat);
    EXPECT_EQ(x.y, y.y);
    EXPECT_EQ(x.rwse, y.rwse);
    EXPECT_EQ(x.lap_vec, y.lap_vec);
    EXPECT_EQ(x.lap_val, y.lap_val);
  }
}

TEST(GraphCache, RoundTrip) {
  TempDir dir;
  GraphDataset ds = two_graphs();
  ds.graphs.push_back(undirected(1, {}));  // a single node, no edges
  ds.graphs.back().node_cat = {2};
  ds.graphs.back().node_attr = {7, 8};
  ds.graphs.back().y = 1;
  pare::compute_rwse(ds, 3);
  pare::compute_lappe(ds, 2);
  pare::random_split(ds, 0.34, 0.33, 1);
  const std::string path = dir.file("ds.bin");
  pare::save_graph_cache(ds, path);
  EXPECT_EQ(pare_test::read_bytes(path).substr(0, 8), "PAREGRPH");
  expect_same(pare::load_graph_cache(path), ds);
  // No temporary file is left beside the cache.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) (void)e, ++files;
  EXPECT_EQ(files, 1);

  // A real data set (regression, float targets, edge labels).
  const std::string zinc = shared("zinc/subset_tu");
  if (zinc.empty()) return;
  GraphDataset z = pare::load_tu_dataset(zinc, "ZINC_val");
  pare::compute_rwse(z, 4);
  pare::save_graph_cache(z, path);
  expect_same(pare::load_graph_cache(path), z);
}

TEST(GraphCache, TruncatedAndCorruptFiles) {
  TempDir dir;
  GraphDataset ds = two_graphs();
  pare::compute_rwse(ds, 2);
  pare::compute_lappe(ds, 2);
  pare::random_split(ds, 0.5, 0, 3);
  const std::string path = dir.file("ds.bin");
  pare::save_graph_cache(ds, path);
  const std::string bytes = pare_test::read_bytes(path);
  // Every proper prefix fails cleanly with the file name and an offset.
  const std::string cut = dir.file("cut.bin");
  for (size_t len = 0; len < bytes.size(); ++len) {
    pare_test::write_bytes(cut, bytes.substr(0, len));
    EXPECT_INPUT_ERROR(pare::load_graph_cache(cut), AllOf(HasSubstr(cut), HasSubstr("offset ")))
        << "length " << len;
  }
  // Trailing garbage.
  pare_test::write_bytes(cut, bytes + "x");
  EXPECT_INPUT_ERROR(pare::load_graph_cache(cut),
                     AllOf(HasSubstr(cut), HasSubstr("offset " + std::to_string(bytes.size()))));
  // Bad magic, version, a huge count and an edge past the node count.
  std::string bad = bytes;
  bad[0] = 'X';
  pare_test::write_bytes(cut, bad);
  EXPECT_INPUT_ERROR(pare::load_graph_cache(cut), AllOf(HasSubstr("offset 0"), HasSubstr("PAREGRPH")));
  bad = bytes;
  bad[8] = 2;
  pare_test::write_bytes(cut, bad);
  EXPECT_INPUT_ERROR(pare::load_graph_cache(cut), AllOf(HasSubstr("offset 8"), HasSubstr("version")));
  bad = bytes;
  bad.replace(12, 8, pare_test::le64(uint64_t(1) << 60));  // name length
  pare_test::write_bytes(cut, bad);
  EXPECT_INPUT_ERROR(pare::load_graph_cache(cut), AllOf(HasSubstr("offset 12"), HasSubstr("remain")));
  // Layout: magic 8, version 4, name (8 + 3 "two"), task (8 + 14), 6 dims (48), node_vocab
  // (8 + 8), edge_vocab (8 + 8), graph count 8, then graph 0: num_nodes 8, y 8, edge_src count 8,
  // edge_src[0] at offset 8+4+11+22+48+16+16+8+8+8+8 = 157.
  bad = bytes;
  bad.replace(157, 8, pare_test::le64(9));
  pare_test::write_bytes(cut, bad);
  EXPECT_INPUT_ERROR(pare::load_graph_cache(cut), AllOf(HasSubstr("9 -> 1"), HasSubstr("offset ")));
  EXPECT_INPUT_ERROR(pare::load_graph_cache(dir.file("missing.bin")), HasSubstr("missing.bin"));
}

}  // namespace
