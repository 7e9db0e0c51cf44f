// Molecules from SMILES (src/data/molecules.h): OGB's atom/bond features on hand-checked molecules,
// Murcko scaffolds, the scaffold split rule, MoleculeNet CSV reading and its errors, the cache,
// and the full HIV.csv (counts and ogbg-molhiv's split sizes; needs $PARE_SHARED_DATA).
#include "data/molecules.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <thread>

#include "test_util.h"

namespace {

using pare::Graph;
using pare::GraphDataset;
using pare_test::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::vector<int64_t> atom(const Graph& g, int64_t i) {
  return std::vector<int64_t>(g.node_cat.begin() + 9 * i, g.node_cat.begin() + 9 * (i + 1));
}
std::vector<int64_t> edge(const Graph& g, int64_t e) {
  return std::vector<int64_t>(g.edge_cat.begin() + 3 * e, g.edge_cat.begin() + 3 * (e + 1));
}

// The moleculenet folder of the shared data ($PARE_SHARED_DATA, else <source>/../shared/data);
// "" when absent.
std::string moleculenet_dir() {
  namespace fs = std::filesystem;
  const char* e = std::getenv("PARE_SHARED_DATA");
  fs::path dir = e && *e ? fs::path(e)
                         : fs::path(__FILE__).parent_path().parent_path().parent_path() / ".." /
                               "shared" / "data";
  dir /= "moleculenet";
  return fs::is_directory(dir) ? dir.string() : "";
}

TEST(MoleculeFeatures, VocabularySizesAreOgbs) {
  // ogb/utils/features.py get_atom_feature_dims / get_bond_feature_dims.
  EXPECT_THAT(pare::ogb_atom_feature_dims(), ElementsAre(119, 5, 12, 12, 10, 6, 6, 2, 2));
  EXPECT_THAT(pare::ogb_bond_feature_dims(), ElementsAre(5, 6, 2));
}

TEST(MoleculeFeatures, Ethanol) {
  const Graph g = pare::smiles_to_graph("CCO");
  EXPECT_EQ(g.num_nodes, 3);
  // Bonds C0-C1, C1-O2, each as i→j then j→i.
  EXPECT_THAT(g.edge_src, ElementsAre(0, 1, 1, 2));
  EXPECT_THAT(g.edge_dst, ElementsAre(1, 0, 2, 1));
  // By hand from OGB's lists: [atomic_num-1, chirality, total degree (Hs included), formal
  // charge + 5, total Hs, radicals, hybridization (SP3 = 2), aromatic, in ring].
  // C0 (CH3): 6-1=5, unspecified 0, degree 1 C + 3 H = 4, charge 0 → 5, 3 H, 0, SP3 2, 0, 0.
  EXPECT_THAT(atom(g, 0), ElementsAre(5, 0, 4, 5, 3, 0, 2, 0, 0));
  // C1 (CH2): degree 2 + 2 H = 4, 2 H.
  EXPECT_THAT(atom(g, 1), ElementsAre(5, 0, 4, 5, 2, 0, 2, 0, 0));
  // O2 (OH): 8-1=7, degree 1 + 1 H = 2, 1 H, SP3.
  EXPECT_THAT(atom(g, 2), ElementsAre(7, 0, 2, 5, 1, 0, 2, 0, 0));
  // SINGLE 0, STEREONONE 0, not conjugated 0.
  for (int64_t e = 0; e < 4; ++e) EXPECT_THAT(edge(g, e), ElementsAre(0, 0, 0)) << e;
}

TEST(MoleculeFeatures, Benzene) {
  const Graph g = pare::smiles_to_graph("c1ccccc1");
  EXPECT_EQ(g.num_nodes, 6);
  EXPECT_EQ(g.num_edges(), 12);
  // Every atom: carbon 5, degree 2 + 1 H = 3, charge 5, 1 H, SP2 = 1, aromatic, in ring.
  for (int64_t i = 0; i < 6; ++i) EXPECT_THAT(atom(g, i), ElementsAre(5, 0, 3, 5, 1, 0, 1, 1, 1));
  // AROMATIC = 3, STEREONONE 0, conjugated 1.
  for (int64_t e = 0; e < 12; ++e) EXPECT_THAT(edge(g, e), ElementsAre(3, 0, 1));
  // The ring closure bond (atoms 5-0) is RDKit's last bond.
  EXPECT_EQ(g.edge_src[10], 5);
  EXPECT_EQ(g.edge_dst[10], 0);
}

TEST(MoleculeFeatures, OgbsOwnExampleChiralityAndStereo) {
  // The example in ogb/utils/features.py: atom 1 is [5, 2, 4, 5, 1, 0, 2, 0, 0]
  // (CHI_TETRAHEDRAL_CCW = 2) and bond 2 (C=C) is [1, 2, 0] (DOUBLE, STEREOE, not conjugated).
  const Graph g = pare::smiles_to_graph("Cl[C@H](/C=C/C)Br");
  EXPECT_EQ(g.num_nodes, 6);
  EXPECT_THAT(atom(g, 1), ElementsAre(5, 2, 4, 5, 1, 0, 2, 0, 0));
  EXPECT_THAT(edge(g, 4), ElementsAre(1, 2, 0));
  EXPECT_THAT(edge(g, 5), ElementsAre(1, 2, 0));
  // Cl: 17-1=16, degree 1, no H; Br: 35-1=34.
  EXPECT_THAT(atom(g, 0), ElementsAre(16, 0, 1, 5, 0, 0, 2, 0, 0));
  EXPECT_EQ(atom(g, 5)[0], 34);
}

TEST(MoleculeFeatures, IonsRadicalsAndMisc) {
  // Two fragments, no bonds: no edges. Na+: 10, degree 0, charge +1 → 6, hybridization
  // UNSPECIFIED → misc 5. Cl-: 16, charge -1 → 4, SP3.
  const Graph salt = pare::smiles_to_graph("[Na+].[Cl-]");
  EXPECT_EQ(salt.num_nodes, 2);
  EXPECT_EQ(salt.num_edges(), 0);
  EXPECT_TRUE(salt.edge_cat.empty());
  EXPECT_THAT(atom(salt, 0), ElementsAre(10, 0, 0, 6, 0, 0, 5, 0, 0));
  EXPECT_THAT(atom(salt, 1), ElementsAre(16, 0, 0, 4, 0, 0, 2, 0, 0));
  // Methyl radical: 3 H, degree 3, one radical electron.
  EXPECT_THAT(atom(pare::smiles_to_graph("[CH3]"), 0), ElementsAre(5, 0, 3, 5, 3, 1, 2, 0, 0));
  // CO2: the carbon is SP (0); C=O double bonds are conjugated in RDKit ([1, 0, 1]).
  const Graph co2 = pare::smiles_to_graph("O=C=O");
  EXPECT_THAT(atom(co2, 1), ElementsAre(5, 0, 2, 5, 0, 0, 0, 0, 0));
  EXPECT_THAT(edge(co2, 0), ElementsAre(1, 0, 1));
  // Dummy atom '*' (atomic number 0) → misc 118.
  EXPECT_EQ(atom(pare::smiles_to_graph("*C"), 0)[0], 118);
}

TEST(MoleculeFeatures, BadSmilesIsInputError) {
  EXPECT_INPUT_ERROR(pare::smiles_to_graph("C1CC"), HasSubstr("'C1CC'"));          // open ring
  EXPECT_INPUT_ERROR(pare::smiles_to_graph("CC(C"), HasSubstr("RDKit can parse"));   // syntax
  EXPECT_INPUT_ERROR(pare::smiles_to_graph("C(C)(C)(C)(C)C"), HasSubstr("sanitize"));  // valence
  EXPECT_INPUT_ERROR(pare::smiles_to_graph("c1cccc1"), HasSubstr("sanitize"));       // kekulize
  EXPECT_INPUT_ERROR(pare::smiles_to_graph(""), HasSubstr("at least one atom"));
}

TEST(MoleculeScaffold, MurckoScaffolds) {
  // Expected strings from RDKit 2022.09's Python MurckoScaffold.MurckoScaffoldSmiles.
  EXPECT_EQ(pare::murcko_scaffold_smiles("CC(C)Cc1ccc(cc1)C(C)C(=O)O"), "c1ccccc1");  // ibuprofen
  EXPECT_EQ(pare::murcko_scaffold_smiles("CCO"), "");  // acyclic: empty scaffold
  EXPECT_EQ(pare::murcko_scaffold_smiles("Cc1cc(Oc2nccc(CCC)c2)ccc1"), "c1ccc(Oc2ccccn2)cc1");
  // Ring-fusion stereocentres survive with includeChirality=True only.
  EXPECT_EQ(pare::murcko_scaffold_smiles("OC(=O)C[C@H]1CC[C@@H]2CCCC[C@H]2C1", true),
            "C1CC[C@H]2CCCC[C@@H]2C1");
  EXPECT_EQ(pare::murcko_scaffold_smiles("OC(=O)C[C@H]1CC[C@@H]2CCCC[C@H]2C1", false),
            "C1CCC2CCCCC2C1");
  // A stereocentre that is not one in the scaffold disappears.
  EXPECT_EQ(pare::murcko_scaffold_smiles("C[C@@H]1CCCC[C@H]1C(=O)O"), "C1CCCCC1");
}

TEST(MoleculeScaffold, SplitRuleMatchesDeepchemOrdering) {
  // Groups: a {0,5,6,7}, b {1,8}, c {2,9}, d {3}, e {4}. sorted(key=(len, first),
  // reverse=True) gives a, c, b, e, d (equal sizes: larger first index first). Cutoffs 8 and 9:
  // a, c, b → train (8); e → valid (8+1 ≤ 9); d → test.
  const std::vector<std::string> s = {"a", "b", "c", "d", "e", "a", "a", "a", "b", "c"};
  const auto sp = pare::scaffold_split(s, 0.8, 0.1);
  EXPECT_THAT(sp.at("train"), ElementsAre(0, 1, 2, 5, 6, 7, 8, 9));
  EXPECT_THAT(sp.at("valid"), ElementsAre(4));
  EXPECT_THAT(sp.at("test"), ElementsAre(3));
  // A group that does not fit train goes to valid/test while later smaller groups still fill
  // train: a (4) train, b (3) exceeds 5 → valid? 4+0+3 > 6 → test, c (1) train.
  const std::vector<std::string> t = {"a", "a", "a", "a", "b", "b", "b", "c", "d", "d"};
  const auto sp2 = pare::scaffold_split(t, 0.5, 0.1);
  // Order: a(4), b(3), d(2, first 8), c(1). train cutoff 5, valid cutoff 6.
  // a → train 4; b: 7 > 5, 4+3 > 6 → test; d: 6 > 5, 4+2 = 6 ≤ 6 → valid; c: 5 ≤ 5 → train.
  EXPECT_THAT(sp2.at("train"), ElementsAre(0, 1, 2, 3, 7));
  EXPECT_THAT(sp2.at("valid"), ElementsAre(8, 9));
  EXPECT_THAT(sp2.at("test"), ElementsAre(4, 5, 6));
}

TEST(MoleculeCsv, EsolFormatWithQuotedFields) {
  TempDir tmp;
  const std::string p = tmp.file("esol.csv");
  // A quoted name with a comma and a doubled quote, CRLF line ends, a blank line.
  pare_test::write_bytes(
      p,
      "Compound ID,measured log solubility in mols per litre,smiles\r\n"
      "\"Acid, \"\"acetic\"\"\",1.5,CC(=O)O\r\n"
      "\r\n"
      "Benzene,-1.64,c1ccccc1\r\n"
      "Toluene,-2.21,Cc1ccccc1 \r\n");
  const GraphDataset ds = pare::load_molecule_csv(p, "molesol");
  EXPECT_EQ(ds.name, "molesol");
  EXPECT_EQ(ds.task, "regression");
  EXPECT_EQ(ds.num_classes, 0);
  EXPECT_EQ(ds.node_cat_dims, 9);
  EXPECT_EQ(ds.edge_cat_dims, 3);
  EXPECT_THAT(ds.node_vocab, ElementsAre(119, 5, 12, 12, 10, 6, 6, 2, 2));
  EXPECT_THAT(ds.edge_vocab, ElementsAre(5, 6, 2));
  ASSERT_EQ(ds.size(), 3);
  EXPECT_DOUBLE_EQ(ds.graphs[0].y, 1.5);
  EXPECT_DOUBLE_EQ(ds.graphs[1].y, -1.64);
  EXPECT_EQ(ds.graphs[0].num_nodes, 4);
  EXPECT_EQ(ds.graphs[2].num_nodes, 7);  // trailing space ends the SMILES (RDKit: a name follows)
  // Scaffolds "", benzene, benzene: benzene's group (2) fills train (2 ≤ 2.4), "" goes to test.
  EXPECT_THAT(ds.splits.at("train"), ElementsAre(1, 2));
  EXPECT_TRUE(ds.splits.at("valid").empty());
  EXPECT_THAT(ds.splits.at("test"), ElementsAre(0));
}

TEST(MoleculeCsv, Errors) {
  TempDir tmp;
  const std::string p = tmp.file("hiv.csv");
  pare_test::write_bytes(p, "smiles,activity\nCCO,CI\n");
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(p, "molhiv"),
                     AllOf(HasSubstr(p), HasSubstr("line 1"), HasSubstr("HIV_active")));
  pare_test::write_bytes(p, "smiles,activity,HIV_active\nCCO,CI,0\nC1CC,CI,0\n");
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(p, "molhiv"),
                     AllOf(HasSubstr(p + ": line 3"), HasSubstr("'C1CC'")));
  pare_test::write_bytes(p, "smiles,activity,HIV_active\nCCO,CI,2\n");
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(p, "molhiv"),
                     AllOf(HasSubstr(p + ": line 2"), HasSubstr("0 or 1"), HasSubstr("'2'")));
  pare_test::write_bytes(p, "smiles,activity,HIV_active\nCCO,CI\n");
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(p, "molhiv"),
                     AllOf(HasSubstr(p + ": line 2"), HasSubstr("3 fields"), HasSubstr("got 2")));
  pare_test::write_bytes(p, "smiles,activity,HIV_active\n\"CCO,CI,0\n");
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(p, "molhiv"),
                     AllOf(HasSubstr(p + ": line 2"), HasSubstr("closing quote")));
  pare_test::write_bytes(p, "");
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(p, "molhiv"), HasSubstr("empty file"));
  const std::string e = tmp.file("esol.csv");
  pare_test::write_bytes(e, "smiles,measured log solubility in mols per litre\nCCO,abc\n");
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(e, "molesol"),
                     AllOf(HasSubstr(e + ": line 2"), HasSubstr("'abc'")));
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(e, "tox21"), HasSubstr("'tox21'"));
  EXPECT_INPUT_ERROR(pare::load_molecule_csv(tmp.file("missing.csv"), "molhiv"),
                     HasSubstr("missing.csv"));
}

TEST(MoleculeCsv, CacheIsWrittenReusedAndRefreshed) {
  TempDir tmp;
  const std::string p = tmp.file("hiv.csv"), e = tmp.file("esol.csv"), cache = tmp.file("mol.cache");
  pare_test::write_bytes(e, "smiles,measured log solubility in mols per litre\nCCO,-0.5\n");
  pare_test::write_bytes(p, "smiles,activity,HIV_active\nCCO,CI,0\nc1ccccc1O,CA,1\n");
  const GraphDataset a = pare::load_molhiv(p, cache);
  ASSERT_TRUE(std::filesystem::exists(cache));
  const GraphDataset b = pare::load_molhiv(p, cache);  // from the cache
  ASSERT_EQ(b.size(), 2);
  EXPECT_EQ(b.name, "molhiv");
  EXPECT_EQ(b.task, "binary");
  EXPECT_EQ(b.num_classes, 1);
  EXPECT_EQ(b.graphs[1].node_cat, a.graphs[1].node_cat);
  EXPECT_EQ(b.graphs[1].edge_src, a.graphs[1].edge_src);
  EXPECT_EQ(b.graphs[1].edge_cat, a.graphs[1].edge_cat);
  EXPECT_EQ(b.graphs[1].y, 1.0);
  EXPECT_EQ(b.splits, a.splits);
  // A CSV newer than the cache is converted again (and the cache rewritten).
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  pare_test::write_bytes(p, "smiles,activity,HIV_active\nCCO,CI,0\nc1ccccc1O,CA,1\nCCN,CI,0\n");
  EXPECT_EQ(pare::load_molhiv(p, cache).size(), 3);
  EXPECT_EQ(pare::load_molhiv(p, cache).size(), 3);
  // The (newer) molhiv cache is not taken for another kind: ESOL is converted from its CSV.
  const GraphDataset c = pare::load_molecule_dataset(e, "molesol", cache);
  EXPECT_EQ(c.name, "molesol");
  EXPECT_EQ(c.size(), 1);
  // A corrupt cache is rebuilt; an empty cache path disables the cache.
  pare_test::write_bytes(cache, "not a cache");
  EXPECT_EQ(pare::load_molhiv(p, cache).size(), 3);
  EXPECT_EQ(pare::load_molhiv(p, cache).size(), 3);
  EXPECT_EQ(pare::load_molecule_dataset(p, "molhiv", "").size(), 3);
}

TEST(MoleculeHiv, CountsAndOgbSplitSizes) {
  const std::string dir = moleculenet_dir();
  if (dir.empty()) GTEST_SKIP() << "moleculenet data not found (set PARE_SHARED_DATA)";
  const auto t0 = std::chrono::steady_clock::now();
  const GraphDataset ds = pare::load_molecule_csv(dir + "/HIV.csv", "molhiv");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "HIV.csv: " << ds.size() << " molecules converted in " << secs << " s\n";
  ASSERT_EQ(ds.size(), 41127);  // every SMILES parses
  int64_t pos = 0, nodes = 0, edges = 0, node_sum = 0, edge_sum = 0;
  for (const Graph& g : ds.graphs) {
    pos += g.y == 1.0;
    nodes += g.num_nodes;
    edges += g.num_edges();
    node_sum = std::accumulate(g.node_cat.begin(), g.node_cat.end(), node_sum);
    edge_sum = std::accumulate(g.edge_cat.begin(), g.edge_cat.end(), edge_sum);
  }
  EXPECT_EQ(pos, 1443);
  // Reference: OGB's smiles2graph over HIV.csv under Python RDKit 2022.09 (same library).
  EXPECT_EQ(nodes, 1049163);
  EXPECT_EQ(edges, 2259376);
  EXPECT_EQ(node_sum, 17729016);
  EXPECT_EQ(edge_sum, 4472322);
  // ogbg-molhiv's split sizes; index sums from pretrain-gnns' scaffold_split under Python RDKit.
  const auto& sp = ds.splits;
  EXPECT_EQ(sp.at("train").size(), 32901u);
  EXPECT_EQ(sp.at("valid").size(), 4113u);
  EXPECT_EQ(sp.at("test").size(), 4113u);
  EXPECT_EQ(std::accumulate(sp.at("valid").begin(), sp.at("valid").end(), int64_t{0}), 66567128);
  EXPECT_EQ(std::accumulate(sp.at("test").begin(), sp.at("test").end(), int64_t{0}), 22447918);
  EXPECT_THAT(std::vector<int64_t>(sp.at("test").begin(), sp.at("test").begin() + 5),
              ElementsAre(0, 1, 2, 7, 17));
}

TEST(MoleculeEsol, CountsAndSplit) {
  const std::string dir = moleculenet_dir();
  if (dir.empty()) GTEST_SKIP() << "moleculenet data not found (set PARE_SHARED_DATA)";
  const GraphDataset ds = pare::load_molecule_csv(dir + "/delaney-processed.csv", "molesol");
  ASSERT_EQ(ds.size(), 1128);
  EXPECT_DOUBLE_EQ(ds.graphs[0].y, -0.77);  // Amigdalin
  int64_t nodes = 0, edges = 0;
  for (const Graph& g : ds.graphs) nodes += g.num_nodes, edges += g.num_edges();
  EXPECT_EQ(nodes, 14991);
  EXPECT_EQ(edges, 30856);
  // 902 / 113 / 113 and these indices: pretrain-gnns' scaffold_split under Python RDKit 2022.09.
  EXPECT_EQ(ds.splits.at("train").size(), 902u);
  EXPECT_EQ(ds.splits.at("valid").size(), 113u);
  EXPECT_EQ(ds.splits.at("test").size(), 113u);
  EXPECT_THAT(std::vector<int64_t>(ds.splits.at("test").begin(), ds.splits.at("test").begin() + 5),
              ElementsAre(0, 1, 3, 4, 8));
}

}  // namespace
