// Molecules from SMILES for the graph-transformer (gps) family, through RDKit's C++ library.
//
// Featurization: exactly OGB's smiles2graph (Hu et al. 2020, "Open Graph Benchmark";
// ogb/utils/mol.py and ogb/utils/features.py): RDKit parses the SMILES (sanitized, implicit Hs),
// every heavy atom is a node with 9 categorical features and every bond two directed edges
// (begin → end, then end → begin, in RDKit's bond order) with 3 categorical features:
//   atom: atomic number (1..118, misc)       119   bond: type (single, double, triple,     5
//         chirality tag (unspecified, CW,      5           aromatic, misc)
//           CCW, other, misc)                              stereo (none, Z, E, cis,         6
//         total degree incl. Hs (0..10, misc) 12           trans, any)
//         formal charge (-5..5, misc)         12           is conjugated                    2
//         total Hs (0..8, misc)               10
//         radical electrons (0..4, misc)       6
//         hybridization (SP, SP2, SP3, SP3D,   6
//           SP3D2, misc)
//         is aromatic, is in a ring          2, 2
// A value outside a list takes the list's last ("misc") index, as OGB's safe_index does.
//
// Data sets (MoleculeNet, Wu et al. 2018; the CSVs OGB converted into ogbg-molhiv/-molesol):
//   "molhiv"  HIV.csv (header smiles,activity,HIV_active): task "binary", y = HIV_active (0/1).
//   "molesol" delaney-processed.csv (ESOL): task "regression", y = "measured log solubility in
//             mols per litre", SMILES column "smiles".
// Both get the scaffold split OGB ships (MoleculeNet's recommendation for both): molecules are
// grouped by the SMILES of their Bemis–Murcko scaffold (Bemis & Murcko 1996; RDKit's
// MurckoScaffoldSmiles with includeChirality=True, as snap-stanford/pretrain-gnns
// chem/splitters.py, whose split OGB adopted); groups are taken largest first (equal sizes: the
// group whose smallest index is larger first — Python's sorted(key=(len, first), reverse=True)),
// each into train while it fits in 80 %, else into valid while train+valid fit in 90 %, else
// test. HIV.csv gives 32,901 / 4,113 / 4,113 (ogbg-molhiv's sizes), ESOL 902 / 113 / 113.
#pragma once

#include "data/graph_data.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace pare {

// OGB's vocabulary sizes (get_atom_feature_dims / get_bond_feature_dims).
const std::vector<int64_t>& ogb_atom_feature_dims();  // {119, 5, 12, 12, 10, 6, 6, 2, 2}
const std::vector<int64_t>& ogb_bond_feature_dims();  // {5, 6, 2}

// One molecule as a graph: node_cat [num_atoms × 9], edge_src/edge_dst/edge_cat [2·num_bonds
// (× 3)], y = 0. Throws InputError("expected a SMILES RDKit can parse, got '...'") when RDKit
// cannot parse or sanitize it (RDKit's reason appended) or it has no atoms.
Graph smiles_to_graph(const std::string& smiles);

// SMILES of the Bemis–Murcko scaffold (ring systems and the linkers between them), as RDKit's
// MurckoScaffold.MurckoScaffoldSmiles(mol=..., includeChirality=...) writes it; "" for a
// molecule without rings. Throws InputError like smiles_to_graph.
std::string murcko_scaffold_smiles(const std::string& smiles, bool include_chirality = true);

// Scaffold split of molecules 0..n-1 given each one's scaffold string (the rule above, with the
// fractions given): {"train", "valid", "test"}, each sorted ascending.
std::map<std::string, std::vector<int64_t>> scaffold_split(const std::vector<std::string>& scaffolds,
                                                           double frac_train = 0.8,
                                                           double frac_valid = 0.1);

// Reads a MoleculeNet CSV of `kind` "molhiv" or "molesol" (RFC 4180 fields: quoted fields may hold
// commas and doubled quotes; blank lines skipped), converts every SMILES and stores the scaffold
// split in ds.splits. Throws InputError "FILE: line N: expected ..., got ..." for a missing
// column, a row with the wrong number of fields, a label that is not 0/1 (molhiv) or a number
// (molesol), a SMILES RDKit cannot parse; "FILE: cannot open" when missing; an unknown kind.
GraphDataset load_molecule_csv(const std::string& path, const std::string& kind);
// The task of a kind: "binary" (molhiv), "regression" (molesol); InputError for another kind.
std::string molecule_task(const std::string& kind);

// load_molecule_csv through a cache (save_graph_cache / load_graph_cache, graph_data.h):
// `cache_path` is used when it exists, is newer than the CSV and holds a data set of this kind;
// otherwise (also when it cannot be read) the CSV is converted and the cache (re)written, splits
// included. An empty cache_path disables the cache.
GraphDataset load_molecule_dataset(const std::string& csv, const std::string& kind,
                                   const std::string& cache_path);
GraphDataset load_molhiv(const std::string& csv, const std::string& cache_path);

}  // namespace pare
