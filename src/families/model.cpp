#include "families/model.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "base/error.h"
#include "families/family.h"
#include "ir/spill.h"

namespace pare {

const Family& Model::family() const { return family_by_name(config.family); }

namespace {
// Splits "blk.3.attn_q.weight" into ("blk.3.attn_q", "weight").
std::pair<std::string, std::string> split_part(const std::string& flat) {
  auto dot = flat.rfind('.');
  if (dot == std::string::npos) return {flat, ""};
  return {flat.substr(0, dot), flat.substr(dot + 1)};
}

// The dense form of a linear slot; InputError naming the slot and its form otherwise.
DenseLinear* dense_form(const std::string& slot, LinearForm& f) {
  auto* d = dynamic_cast<DenseLinear*>(&f);
  PARE_CHECK(d, "linear '", slot, "' has form '", f.kind(),
             "'; this operation needs the dense form (passes that edit weights, such as slicegpt, ",
             "must run before the pass that made this form)");
  return d;
}
}  // namespace

bool Model::has(const std::string& flat) const {
  if (tensors.count(flat)) return true;
  auto [slot, part] = split_part(flat);
  auto it = linears.find(slot);
  return it != linears.end() && it->second->tensors().count(part);
}

const torch::Tensor& Model::at(const std::string& flat) const {
  return const_cast<Model*>(this)->at(flat);
}

torch::Tensor& Model::at(const std::string& flat) {
  auto t = tensors.find(flat);
  if (t != tensors.end()) return t->second;
  auto [slot, part] = split_part(flat);
  auto it = linears.find(slot);
  PARE_CHECK(it != linears.end(), "model has no tensor '", flat, "'");
  DenseLinear* d = dense_form(slot, *it->second);
  if (part == "weight") return d->weight;
  if (part == "bias" && d->bias.defined()) return d->bias;
  throw InputError(concat("model has no tensor '", flat, "'"));
}

const LinearForm& Model::linear(const std::string& slot) const {
  auto it = linears.find(slot);
  PARE_ASSERT(it != linears.end(), "no linear slot ", slot);
  return *it->second;
}

DenseLinear& Model::dense(const std::string& slot) {
  auto it = linears.find(slot);
  PARE_CHECK(it != linears.end(), "model has no linear slot '", slot, "'");
  DenseLinear* d = dense_form(slot, *it->second);
  return *d;
}

std::map<std::string, torch::Tensor> Model::flat_tensors() const {
  std::map<std::string, torch::Tensor> out = tensors;
  for (const auto& [slot, form] : linears)
    for (const auto& [part, t] : form->tensors()) out[slot + "." + part] = t;
  return out;
}

int64_t Model::num_params() const {
  int64_t n = 0;
  const Family& fam = family();
  for (const auto& [name, t] : tensors)
    if (!fam.is_buffer(name)) n += t.numel();  // BatchNorm running statistics are not parameters
  for (const auto& [slot, form] : linears) n += form->num_params();
  return n;
}

std::vector<torch::Tensor> Model::parameters() {
  std::vector<torch::Tensor> out;
  const Family& fam = family();
  for (auto& [name, t] : tensors)
    if (t.is_floating_point() && !fam.is_buffer(name)) out.push_back(t);
  for (auto& [slot, form] : linears) {
    auto* d = dynamic_cast<DenseLinear*>(form.get());
    PARE_CHECK(d, "training needs dense linears; '", slot, "' is ", form->kind());
    out.push_back(d->weight);
    if (d->bias.defined()) out.push_back(d->bias);
  }
  return out;
}

void Model::set_requires_grad(bool on) {
  for (auto& t : parameters()) t.requires_grad_(on);
}

void Model::to_dtype(torch::ScalarType dtype, const std::string& prefix) {
  auto under = [&](const std::string& name) { return name.compare(0, prefix.size(), prefix) == 0; };
  for (auto& [name, t] : tensors)
    if (t.is_floating_point() && under(name)) t = t.detach().to(dtype);
  for (auto& [slot, form] : linears)
    if (under(slot)) form->to_dtype(dtype);
}

torch::ScalarType Model::dtype() const {
  for (const auto& [name, t] : tensors)
    if (t.is_floating_point()) return t.scalar_type();
  return torch::kFloat32;
}

Model Model::clone() const {
  Model m;
  m.config = config;
  for (const auto& [name, t] : tensors) m.tensors[name] = t.detach().clone();
  for (const auto& [slot, form] : linears) m.linears[slot] = form->clone();
  return m;
}

std::vector<std::string> Model::verify() const {
  std::vector<std::string> problems;
  auto expected = family().expected_shapes(config);
  auto actual = flat_tensors();
  for (const auto& [name, shape] : expected) {
    auto it = actual.find(name);
    if (it == actual.end()) {
      problems.push_back(concat("tensor '", name, "': missing"));
      continue;
    }
    if (it->second.sizes().vec() != shape)
      problems.push_back(concat("tensor '", name, "': expected ", c10::IntArrayRef(shape), ", got ",
                             it->second.sizes()));
  }
  for (const auto& [name, t] : actual)
    if (!expected.count(name)) problems.push_back(concat("tensor '", name, "': not expected"));
  return problems;
}

void Model::verify_or_throw(const std::string& context) const {
  auto p = verify();
  if (p.empty()) return;
  std::string msg = context + ": " + std::to_string(p.size()) + " shape problem(s): ";
  for (size_t i = 0; i < p.size(); ++i) msg += (i ? "; " : "") + p[i];
  throw InputError(msg);
}

torch::Tensor Model::forward(const torch::Tensor& inputs) const {
  return family().forward(*this, inputs);
}

// ---------------------------------------------------------------------------------------------

std::vector<DimGroup> Rewriter::groups() const { return m_.family().dim_groups(m_); }

DimGroup Rewriter::group(const std::string& name) const {
  for (auto& g : groups())
    if (g.name == name) return g;
  throw InputError(concat("no dimension group '", name, "'"));
}

torch::Tensor expand_block_indices(const std::vector<int64_t>& units, int64_t block) {
  std::vector<int64_t> idx;
  idx.reserve(units.size() * block);
  for (int64_t u : units)
    for (int64_t b = 0; b < block; ++b) idx.push_back(u * block + b);
  return torch::tensor(idx, torch::kLong);
}

void Rewriter::keep(const std::string& name, const std::vector<int64_t>& indices) {
  DimGroup g = group(name);
  for (size_t i = 0; i < indices.size(); ++i) {
    PARE_CHECK(indices[i] >= 0 && indices[i] < g.size, "keep(", name, "): index ", indices[i],
               " outside [0, ", g.size, ")");
    PARE_CHECK(i == 0 || indices[i] > indices[i - 1], "keep(", name,
               "): indices must be sorted and unique");
  }
  for (const auto& u : g.uses) {
    torch::Tensor& t = m_.at(u.name);
    t = t.detach().index_select(u.axis, expand_block_indices(indices, u.block)).contiguous();
  }
  apply_size(g, static_cast<int64_t>(indices.size()));
}

void Rewriter::rotate(const std::string& name, const torch::Tensor& Q) {
  DimGroup g = group(name);
  PARE_CHECK(Q.dim() == 2 && Q.size(0) == g.size && Q.size(1) <= g.size, "rotate(", name,
             "): Q must be [", g.size, ", d <= ", g.size, "], got ", Q.sizes());
  for (const auto& u : g.uses) {
    PARE_CHECK(!u.is_norm, "rotate(", name, "): '", u.name,
               "' is a norm weight; fold the norms into the linears first (slicegpt does)");
    PARE_CHECK(u.block == 1, "rotate(", name, "): blocked uses cannot be rotated");
  }
  for (const auto& u : g.uses) {
    torch::Tensor& t = m_.at(u.name);
    const torch::Tensor q = Q.to(torch::kFloat64);
    auto rotated = [&](const torch::Tensor& x) {  // rotated axis moves last, then back
      return at::tensordot(x.detach().to(torch::kFloat64), q, {u.axis}, {0}).movedim(-1, u.axis);
    };
    // In chunks along another axis of at most 2M elements (16 MiB in float64), so that no large
    // matrix (a vocab × hidden embedding, an MLP weight) ever exists in float64 whole: a
    // layer-by-layer pass holds one layer's worth of memory.
    const int64_t along = u.axis == 0 ? 1 : 0;
    const int64_t kChunk =
        t.dim() < 2 ? 1 : std::max<int64_t>(1, (int64_t(2) << 20) / std::max<int64_t>(1, t.numel() / t.size(along)));
    // With a scratch file every matrix of 1 MiB or more is written there and dropped from
    // memory, and the source's pages are paged out: a layer is never resident twice.
    const bool to_scratch =
        scratch && t.dim() >= 2 && t.numel() * int64_t(t.element_size()) >= (int64_t(1) << 20);
    if (t.dim() < 2 || t.size(along) <= kChunk) {
      torch::Tensor r = rotated(t).to(t.scalar_type()).contiguous();
      if (to_scratch) {
        torch::Tensor out = scratch->allocate(r.sizes().vec(), r.scalar_type());
        out.copy_(r);
        SpillFile::release(out);
        page_out(t);
        r = out;
      }
      t = r;
      continue;
    }
    std::vector<int64_t> shape = t.sizes().vec();
    shape[u.axis] = Q.size(1);
    torch::Tensor out = to_scratch ? scratch->allocate(shape, t.scalar_type()) : torch::empty(shape, t.options());
    for (int64_t i = 0; i < t.size(along); i += kChunk) {
      const int64_t n = std::min(kChunk, t.size(along) - i);
      out.narrow(along, i, n).copy_(rotated(t.narrow(along, i, n)));
      if (to_scratch && along == 0 && t.is_contiguous()) {  // row chunks: contiguous memory
        page_out(t.narrow(0, i, n));
        SpillFile::release(out.narrow(0, i, n));
        trim_heap();
      }
    }
    if (to_scratch) {
      SpillFile::release(out);
      page_out(t);
    }
    t = out;
  }
  apply_size(g, Q.size(1));
}

void Rewriter::add_shortcuts() {
  if (m_.config.shortcuts) return;
  const int64_t L = m_.config.num_hidden_layers;
  const auto dtype = m_.dtype();
  // L · 2 identity matrices of hidden² elements are as large as a layer's attention: with a
  // scratch file each is written there and dropped from memory.
  auto eye = [&](int64_t n) {
    if (!scratch) return torch::eye(n, torch::TensorOptions().dtype(dtype));
    torch::Tensor t = scratch->allocate({n, n}, dtype);  // zero-filled scratch space
    t.diagonal().fill_(1);
    SpillFile::release(t);
    return t;
  };
  for (int64_t l = 0; l < L; ++l) {
    const auto& d = m_.config.layers[l];
    PARE_CHECK(d.attn_in == d.mlp_in && d.mlp_in == m_.config.site_dim(2 * l + 2),
               "add_shortcuts: residual widths differ before shortcuts exist");
    // Parallel blocks (phi) have one residual update per layer, so one shortcut.
    if (!m_.config.parallel_blocks())
      m_.tensors["blk." + std::to_string(l) + ".attn_shortcut"] = eye(d.attn_in);
    m_.tensors["blk." + std::to_string(l) + ".ffn_shortcut"] = eye(d.mlp_in);
  }
  m_.config.shortcuts = true;
}

void Rewriter::remove_branch(int64_t layer, const std::string& branch) {
  ArchConfig c = m_.config;
  PARE_CHECK(c.family == "vit" || c.family == "gps" || c.family == "bert", "remove_branch: the ",
             c.family, " family cannot lose a branch (vit, bert and gps can)");
  PARE_CHECK(layer >= 0 && layer < c.num_hidden_layers, "remove_branch: layer ", layer,
             " outside 0..", c.num_hidden_layers - 1);
  PARE_CHECK(branch == "attention" || branch == "ffn", "remove_branch: expected attention or ffn, got '",
             branch, "'");
  LayerDims& d = c.layers[layer];
  if (branch == "attention") {
    PARE_CHECK(d.attention, "remove_branch: layer ", layer, " has no attention branch left");
    PARE_CHECK(!c.prune_step(layer), "remove_branch: layer ", layer,
               " holds a token-pruning step, which needs its attention");
    PARE_CHECK(!c.is_graph() || c.gps.global_model != "None", "remove_branch: the gps model has no global attention");
    d.attention = false;
    d.heads = d.kv_heads = 0;
  } else {
    PARE_CHECK(d.ffn, "remove_branch: layer ", layer, " has no FFN branch left");
    d.ffn = false;
    d.intermediate_size = 0;
  }
  // What the branch owned: whatever the family no longer expects.
  const Family& f = m_.family();
  const auto slots = f.linear_slots(c);
  for (auto it = c.quantized.begin(); it != c.quantized.end();)
    it = std::find(slots.begin(), slots.end(), it->first) == slots.end() ? c.quantized.erase(it) : std::next(it);
  if (c.quantized.empty()) c.quant_method.clear();
  const auto shapes = f.expected_shapes(c);
  for (auto it = m_.linears.begin(); it != m_.linears.end();)
    it = std::find(slots.begin(), slots.end(), it->first) == slots.end() ? m_.linears.erase(it) : std::next(it);
  for (auto it = m_.tensors.begin(); it != m_.tensors.end();)
    it = shapes.count(it->first) ? std::next(it) : m_.tensors.erase(it);
  m_.config = c;
}

void Rewriter::remove_layer(int64_t layer) {
  ArchConfig& c = m_.config;
  PARE_CHECK(c.family == "vit" || c.family == "bert", "remove_layer: the ", c.family,
             " family keeps its layers (remove_branch removes what a layer computes)");
  PARE_CHECK(layer >= 0 && layer < c.num_hidden_layers, "remove_layer: layer ", layer,
             " outside 0..", c.num_hidden_layers - 1);
  PARE_CHECK(!c.layers[layer].attention && !c.layers[layer].ffn, "remove_layer: layer ", layer,
             " still has its ", c.layers[layer].attention ? "attention" : "FFN", " branch");
  PARE_CHECK(!c.shortcuts, "remove_layer: layer ", layer,
             " carries SliceGPT shortcut matrices; remove layers before slicing");
  PARE_CHECK(c.num_hidden_layers > 1, "remove_layer: the model's last layer cannot be removed");
  // blk.J. → blk.(J − 1). for every J > layer; nothing of `layer` itself is left but its norms'
  // absence (both branches gone), so only later names move.
  auto renamed = [&](const std::string& name) -> std::string {
    if (name.rfind("blk.", 0) != 0) return name;
    const size_t dot = name.find('.', 4);
    const int64_t j = std::stoll(name.substr(4, dot - 4));
    PARE_ASSERT(j != layer, "remove_layer: ", name, " still belongs to layer ", layer);
    return j > layer ? "blk." + std::to_string(j - 1) + name.substr(dot) : name;
  };
  std::map<std::string, torch::Tensor> tensors;
  for (auto& [n, t] : m_.tensors) tensors[renamed(n)] = t;
  std::map<std::string, std::shared_ptr<LinearForm>> linears;
  for (auto& [n, l] : m_.linears) linears[renamed(n)] = l;
  std::map<std::string, QuantSlot> quantized;
  for (auto& [n, q] : c.quantized) quantized[renamed(n)] = q;
  m_.tensors = std::move(tensors);
  m_.linears = std::move(linears);
  c.quantized = std::move(quantized);
  c.layers.erase(c.layers.begin() + layer);
  c.num_hidden_layers -= 1;
  for (auto& st : c.token_pruning)
    if (st.layer > layer) st.layer -= 1;
}

void Rewriter::apply_size(const DimGroup& g, int64_t size) {
  ArchConfig& c = m_.config;
  switch (g.kind) {
    case DimGroup::kHidden:
      for (int64_t s = 0; s < c.num_sites(); ++s) c.set_site_dim(s, size);
      if (c.norm == "layernorm") c.hidden_size = size;
      break;
    case DimGroup::kSite:
      c.set_site_dim(g.index, size);
      break;
    case DimGroup::kHeads:
      // Without grouped-query attention the group also holds K and V: kv_heads follows.
      if (c.layers[g.index].kv_heads == c.layers[g.index].heads) c.layers[g.index].kv_heads = size;
      c.layers[g.index].heads = size;
      break;
    case DimGroup::kKvHeads:
      c.layers[g.index].kv_heads = size;
      break;
    case DimGroup::kFfn:
      c.layers[g.index].intermediate_size = size;
      break;
  }
}

}  // namespace pare
