// Molecules from SMILES (RDKit) in OGB's featurization, MoleculeNet CSV readers and the
// Bemis–Murcko scaffold split. RDKit's headers stay in this file (molecules.h has none).
//
// Sources mirrored here (read at snap-stanford/ogb master and snap-stanford/pretrain-gnns master):
//   ogb/utils/features.py  allowable_features, atom_to_feature_vector, bond_to_feature_vector
//   ogb/utils/mol.py       smiles2graph (removeHs=True, reorder_atoms=False: RDKit's atom order)
//   pretrain-gnns chem/splitters.py  generate_scaffold / scaffold_split (include_chirality=True)
//   rdkit/Chem/Scaffolds/MurckoScaffold.py  GetScaffoldForMol, MurckoScaffoldSmiles
#include "data/molecules.h"

#include <GraphMol/ChemTransforms/ChemTransforms.h>
#include <GraphMol/GraphMol.h>
#include <GraphMol/MolOps.h>
#include <GraphMol/SmilesParse/SmilesParse.h>
#include <GraphMol/SmilesParse/SmilesWrite.h>
#include <RDGeneral/RDLog.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fileio.h"

namespace pare {

namespace {

// ---- OGB's feature lists (ogb/utils/features.py, allowable_features) ------------------------
// possible_atomic_num_list      1..118, misc                                   (119)
// possible_chirality_list       CHI_UNSPECIFIED, CHI_TETRAHEDRAL_CW, CHI_TETRAHEDRAL_CCW,
//                               CHI_OTHER, misc                                 (5)
// possible_degree_list          0..10, misc   (atom.GetTotalDegree(): Hs included) (12)
// possible_formal_charge_list   -5..5, misc                                     (12)
// possible_numH_list            0..8, misc    (atom.GetTotalNumHs())            (10)
// possible_number_radical_e_list 0..4, misc                                     (6)
// possible_hybridization_list   SP, SP2, SP3, SP3D, SP3D2, misc                 (6)
// possible_is_aromatic_list     False, True                                     (2)
// possible_is_in_ring_list      False, True                                     (2)
// possible_bond_type_list       SINGLE, DOUBLE, TRIPLE, AROMATIC, misc          (5)
// possible_bond_stereo_list     STEREONONE, STEREOZ, STEREOE, STEREOCIS, STEREOTRANS,
//                               STEREOANY (no misc: OGB's list.index raises)    (6)
// possible_is_conjugated_list   False, True                                     (2)
// safe_index(list, v) is v's position, or the last (misc) position when v is not in the list.

// Index of v in the integer list lo..hi followed by misc (safe_index over range(lo, hi+1)+[misc]).
int64_t range_index(int64_t v, int64_t lo, int64_t hi) {
  return (v >= lo && v <= hi) ? v - lo : hi - lo + 1;
}

int64_t chirality_index(RDKit::Atom::ChiralType t) {
  switch (t) {
    case RDKit::Atom::CHI_UNSPECIFIED: return 0;
    case RDKit::Atom::CHI_TETRAHEDRAL_CW: return 1;
    case RDKit::Atom::CHI_TETRAHEDRAL_CCW: return 2;
    case RDKit::Atom::CHI_OTHER: return 3;
    default: return 4;  // misc (CHI_TETRAHEDRAL, CHI_ALLENE, CHI_SQUAREPLANAR, ...)
  }
}

int64_t hybridization_index(RDKit::Atom::HybridizationType h) {
  switch (h) {
    case RDKit::Atom::SP: return 0;
    case RDKit::Atom::SP2: return 1;
    case RDKit::Atom::SP3: return 2;
    case RDKit::Atom::SP3D: return 3;
    case RDKit::Atom::SP3D2: return 4;
    default: return 5;  // misc (UNSPECIFIED, S, OTHER)
  }
}

int64_t bond_type_index(RDKit::Bond::BondType t) {
  switch (t) {
    case RDKit::Bond::SINGLE: return 0;
    case RDKit::Bond::DOUBLE: return 1;
    case RDKit::Bond::TRIPLE: return 2;
    case RDKit::Bond::AROMATIC: return 3;
    default: return 4;  // misc (dative, quadruple, ...)
  }
}

int64_t bond_stereo_index(RDKit::Bond::BondStereo s, const std::string& smiles) {
  switch (s) {
    case RDKit::Bond::STEREONONE: return 0;
    case RDKit::Bond::STEREOZ: return 1;
    case RDKit::Bond::STEREOE: return 2;
    case RDKit::Bond::STEREOCIS: return 3;
    case RDKit::Bond::STEREOTRANS: return 4;
    case RDKit::Bond::STEREOANY: return 5;
  }
  throw InputError(concat("expected bond stereo in OGB's list (none, Z, E, cis, trans, any), got ",
                          "RDKit stereo code ", static_cast<int>(s), " in '", smiles, "'"));
}

// RDKit's parse (Chem.MolFromSmiles: sanitized, Hs removed) with its logging silenced; throws
// InputError naming the SMILES and RDKit's reason.
std::unique_ptr<RDKit::RWMol> parse_smiles(const std::string& smiles) {
  RDLog::LogStateSetter quiet;  // disables every RDKit log until the end of this scope
  std::unique_ptr<RDKit::RWMol> mol;
  try {
    mol.reset(RDKit::SmilesToMol(smiles, RDKit::SmilesParserParams()));
  } catch (const std::exception& e) {
    throw InputError(concat("expected a SMILES RDKit can sanitize, got '", smiles, "' (RDKit: ",
                            e.what(), ")"));
  }
  PARE_CHECK(mol, "expected a SMILES RDKit can parse, got '", smiles, "'");
  PARE_CHECK(mol->getNumAtoms() > 0, "expected a SMILES with at least one atom, got '", smiles, "'");
  return mol;
}

Graph mol_to_graph(const RDKit::ROMol& mol, const std::string& smiles) {
  Graph g;
  g.num_nodes = mol.getNumAtoms();
  g.node_cat.reserve(static_cast<size_t>(g.num_nodes) * 9);
  const RDKit::RingInfo* rings = mol.getRingInfo();
  PARE_ASSERT(rings->isInitialized(), "ring info after sanitization");
  for (const RDKit::Atom* a : mol.atoms()) {
    const int64_t f[9] = {
        range_index(a->getAtomicNum(), 1, 118),
        chirality_index(a->getChiralTag()),
        range_index(a->getTotalDegree(), 0, 10),
        range_index(a->getFormalCharge(), -5, 5),
        range_index(a->getTotalNumHs(), 0, 8),
        range_index(a->getNumRadicalElectrons(), 0, 4),
        hybridization_index(a->getHybridization()),
        a->getIsAromatic() ? 1 : 0,
        rings->numAtomRings(a->getIdx()) > 0 ? 1 : 0,
    };
    g.node_cat.insert(g.node_cat.end(), f, f + 9);
  }
  const size_t nb = mol.getNumBonds();
  g.edge_src.reserve(2 * nb);
  g.edge_dst.reserve(2 * nb);
  g.edge_cat.reserve(6 * nb);
  for (const RDKit::Bond* b : mol.bonds()) {
    const int64_t i = b->getBeginAtomIdx(), j = b->getEndAtomIdx();
    const int64_t f[3] = {bond_type_index(b->getBondType()), bond_stereo_index(b->getStereo(), smiles),
                          b->getIsConjugated() ? 1 : 0};
    g.edge_src.push_back(i);
    g.edge_dst.push_back(j);
    g.edge_cat.insert(g.edge_cat.end(), f, f + 3);
    g.edge_src.push_back(j);
    g.edge_dst.push_back(i);
    g.edge_cat.insert(g.edge_cat.end(), f, f + 3);
  }
  return g;
}

// MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=chirality): GetScaffoldForMol
// (MurckoDecompose, ClearComputedProps, UpdatePropertyCache, GetSymmSSSR), then
// MolToSmiles(scaffold, isomericSmiles=chirality).
std::string scaffold_of(const RDKit::ROMol& mol, bool chirality, const std::string& smiles) {
  RDLog::LogStateSetter quiet;
  try {
    std::unique_ptr<RDKit::ROMol> sc(RDKit::MurckoDecompose(mol));
    PARE_ASSERT(sc, "MurckoDecompose returned null for ", smiles);
    sc->clearComputedProps();
    sc->updatePropertyCache();
    RDKit::MolOps::symmetrizeSSSR(*sc);
    return RDKit::MolToSmiles(*sc, chirality);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(concat("expected a molecule whose Murcko scaffold RDKit can write, got '",
                            smiles, "' (RDKit: ", e.what(), ")"));
  }
}

// ---- CSV (RFC 4180) -------------------------------------------------------------------------

struct CsvRecord {
  int64_t line = 0;  // 1-based line where the record starts
  std::vector<std::string> fields;
};

// Splits `text` into records: fields separated by commas; a field starting with '"' runs to the
// closing quote ("" inside is one quote) and may hold commas and newlines; CRLF or LF ends a
// record; blank lines are skipped (as pandas and csv.DictReader do).
std::vector<CsvRecord> parse_csv(const std::string& text, const std::string& path) {
  std::vector<CsvRecord> out;
  size_t p = 0;
  int64_t line = 1;
  const size_t n = text.size();
  while (p < n) {
    if (text[p] == '\n' || (text[p] == '\r' && p + 1 < n && text[p + 1] == '\n')) {  // blank line
      p += text[p] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    CsvRecord rec;
    rec.line = line;
    for (;;) {
      std::string field;
      if (p < n && text[p] == '"') {
        const int64_t start_line = line;
        ++p;
        for (;;) {
          PARE_CHECK(p < n, path, ": line ", start_line,
                     ": expected a closing quote for the field opened here, got end of file");
          if (text[p] == '"') {
            if (p + 1 < n && text[p + 1] == '"') {
              field += '"';
              p += 2;
              continue;
            }
            ++p;
            break;
          }
          if (text[p] == '\n') ++line;
          field += text[p++];
        }
        PARE_CHECK(p >= n || text[p] == ',' || text[p] == '\n' || text[p] == '\r', path, ": line ",
                   line, ": expected ',' or end of line after a quoted field, got '", text[p], "'");
      } else {
        while (p < n && text[p] != ',' && text[p] != '\n' && text[p] != '\r') field += text[p++];
      }
      rec.fields.push_back(std::move(field));
      if (p < n && text[p] == ',') {
        ++p;
        continue;
      }
      if (p < n && text[p] == '\r') ++p;
      if (p < n && text[p] == '\n') {
        ++p;
        ++line;
      }
      break;
    }
    out.push_back(std::move(rec));
  }
  return out;
}

size_t column(const CsvRecord& header, const std::string& name, const std::string& path) {
  for (size_t i = 0; i < header.fields.size(); ++i)
    if (header.fields[i] == name) return i;
  std::string got;
  for (size_t i = 0; i < header.fields.size(); ++i) got += (i ? "," : "") + header.fields[i];
  throw InputError(concat(path, ": line ", header.line, ": expected a column '", name,
                          "' in the header, got '", got, "'"));
}

struct MoleculeCsvKind {
  const char* name;
  const char* task;
  int64_t num_classes;
  const char* smiles_column;
  const char* target_column;
};

const MoleculeCsvKind kKinds[] = {
    {"molhiv", "binary", 1, "smiles", "HIV_active"},
    {"molesol", "regression", 0, "smiles", "measured log solubility in mols per litre"},
};

const MoleculeCsvKind& find_kind(const std::string& kind) {
  for (const auto& k : kKinds)
    if (kind == k.name) return k;
  throw InputError(concat("molecule data set: expected kind 'molhiv' or 'molesol', got '", kind, "'"));
}

}  // namespace

std::string molecule_task(const std::string& kind) { return find_kind(kind).task; }

namespace {

double parse_target(const std::string& s, const MoleculeCsvKind& k, const std::string& path,
                    int64_t line) {
  if (k.num_classes == 1) {
    PARE_CHECK(s == "0" || s == "1", path, ": line ", line, ": expected ", k.target_column,
               " 0 or 1, got '", s, "'");
    return s == "1" ? 1.0 : 0.0;
  }
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  PARE_CHECK(!s.empty() && used == s.size() && std::isfinite(v), path, ": line ", line,
             ": expected a finite number in column '", k.target_column, "', got '", s, "'");
  return v;
}

}  // namespace

const std::vector<int64_t>& ogb_atom_feature_dims() {
  static const std::vector<int64_t> d = {119, 5, 12, 12, 10, 6, 6, 2, 2};
  return d;
}

const std::vector<int64_t>& ogb_bond_feature_dims() {
  static const std::vector<int64_t> d = {5, 6, 2};
  return d;
}

Graph smiles_to_graph(const std::string& smiles) {
  auto mol = parse_smiles(smiles);
  return mol_to_graph(*mol, smiles);
}

std::string murcko_scaffold_smiles(const std::string& smiles, bool include_chirality) {
  auto mol = parse_smiles(smiles);
  return scaffold_of(*mol, include_chirality, smiles);
}

std::map<std::string, std::vector<int64_t>> scaffold_split(const std::vector<std::string>& scaffolds,
                                                           double frac_train, double frac_valid) {
  PARE_CHECK(frac_train >= 0 && frac_valid >= 0 && frac_train + frac_valid <= 1.0,
             "scaffold split: expected fractions train, valid >= 0 with train + valid <= 1, got ",
             frac_train, ", ", frac_valid);
  // Groups in first-seen order; each group's indices ascend because i does.
  std::map<std::string, size_t> group_of;
  std::vector<std::vector<int64_t>> groups;
  for (size_t i = 0; i < scaffolds.size(); ++i) {
    auto [it, fresh] = group_of.emplace(scaffolds[i], groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(static_cast<int64_t>(i));
  }
  // sorted(key=lambda x: (len(x[1]), x[1][0]), reverse=True): larger groups first, then the
  // larger first index first (reverse applies to the whole key).
  std::sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) {
    if (a.size() != b.size()) return a.size() > b.size();
    return a.front() > b.front();
  });
  const double n = static_cast<double>(scaffolds.size());
  const double train_cutoff = frac_train * n, valid_cutoff = (frac_train + frac_valid) * n;
  std::vector<int64_t> train, valid, test;
  for (const auto& g : groups) {
    const double sz = static_cast<double>(g.size());
    if (static_cast<double>(train.size()) + sz > train_cutoff) {
      if (static_cast<double>(train.size() + valid.size()) + sz > valid_cutoff)
        test.insert(test.end(), g.begin(), g.end());
      else
        valid.insert(valid.end(), g.begin(), g.end());
    } else {
      train.insert(train.end(), g.begin(), g.end());
    }
  }
  for (auto* v : {&train, &valid, &test}) std::sort(v->begin(), v->end());
  return {{"train", std::move(train)}, {"valid", std::move(valid)}, {"test", std::move(test)}};
}

GraphDataset load_molecule_csv(const std::string& path, const std::string& kind) {
  const MoleculeCsvKind& k = find_kind(kind);
  const std::vector<CsvRecord> recs = parse_csv(read_file(path), path);
  PARE_CHECK(!recs.empty(), path, ": line 1: expected a header with columns '", k.smiles_column,
             "' and '", k.target_column, "', got an empty file");
  const CsvRecord& header = recs[0];
  const size_t smiles_col = column(header, k.smiles_column, path);
  const size_t target_col = column(header, k.target_column, path);

  GraphDataset ds;
  ds.name = k.name;
  ds.task = k.task;
  ds.num_classes = k.num_classes;
  ds.node_cat_dims = static_cast<int64_t>(ogb_atom_feature_dims().size());
  ds.edge_cat_dims = static_cast<int64_t>(ogb_bond_feature_dims().size());
  ds.node_vocab = ogb_atom_feature_dims();
  ds.edge_vocab = ogb_bond_feature_dims();
  ds.graphs.reserve(recs.size() - 1);
  std::vector<std::string> scaffolds;
  scaffolds.reserve(recs.size() - 1);
  for (size_t r = 1; r < recs.size(); ++r) {
    const CsvRecord& rec = recs[r];
    PARE_CHECK(rec.fields.size() == header.fields.size(), path, ": line ", rec.line, ": expected ",
               header.fields.size(), " fields as in the header, got ", rec.fields.size());
    const std::string& smiles = rec.fields[smiles_col];
    const double y = parse_target(rec.fields[target_col], k, path, rec.line);
    std::unique_ptr<RDKit::RWMol> mol;
    try {
      mol = parse_smiles(smiles);
      ds.graphs.push_back(mol_to_graph(*mol, smiles));
      scaffolds.push_back(scaffold_of(*mol, /*chirality=*/true, smiles));
    } catch (const InputError& e) {
      throw InputError(concat(path, ": line ", rec.line, ": ", e.what()));
    }
    ds.graphs.back().y = y;
  }
  PARE_CHECK(!ds.graphs.empty(), path, ": expected at least one molecule after the header, got none");
  ds.splits = scaffold_split(scaffolds);
  return ds;
}

GraphDataset load_molecule_dataset(const std::string& csv, const std::string& kind,
                                   const std::string& cache_path) {
  const MoleculeCsvKind& k = find_kind(kind);
  namespace fs = std::filesystem;
  PARE_CHECK(file_exists(csv), csv, ": cannot open (molecule CSV for ", kind, ")");
  if (!cache_path.empty()) {
    std::error_code ec1, ec2;
    const auto t_cache = fs::last_write_time(cache_path, ec1);
    const auto t_csv = fs::last_write_time(csv, ec2);
    if (!ec1 && !ec2 && t_cache > t_csv) {
      try {
        GraphDataset ds = load_graph_cache(cache_path);
        if (ds.name == k.name && ds.task == k.task && ds.size() > 0 && ds.splits.size() == 3 &&
            ds.node_vocab == ogb_atom_feature_dims() && ds.edge_vocab == ogb_bond_feature_dims())
          return ds;
      } catch (const InputError&) {
        // An unreadable or foreign cache is rebuilt from the CSV below.
      }
    }
  }
  GraphDataset ds = load_molecule_csv(csv, kind);
  if (!cache_path.empty()) save_graph_cache(ds, cache_path);
  return ds;
}

GraphDataset load_molhiv(const std::string& csv, const std::string& cache_path) {
  return load_molecule_dataset(csv, "molhiv", cache_path);
}

}  // namespace pare
