// The gps family (GraphGPS): forward against an independent PyTorch reference
// (tests/fixtures/make_gps_fixtures.py: GINE / GatedGCN / GIN + graph LayerNorm, with RWSE and
// LapPE), batching invariance, the ZINC checkpoint layout and its parameter count (423,717 as
// GraphGPS reports), FLOPs by hand, bad inputs, config.json and checkpoint round trips, head and
// FFN pruning through the Rewriter.
#include "families/gps.h"

#include <ATen/ATen.h>

#include <cmath>

#include "families/checkpoint.h"
#include "families/family.h"
#include "data/graph_data.h"
#include "test_util.h"
#include "io/torch_pickle.h"

namespace {

using namespace pare;
using namespace pare_test;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// The batch of fixture NAME_io.pt as pare's GraphBatch, plus the expected logits.
struct Io {
  GraphBatch batch;
  std::map<std::string, torch::Tensor> t;
};

Io load_io(const std::string& name) {
  Io io;
  io.batch = gps_fixture_batch(name, &io.t);
  return io;
}

// Graph i of a batch, alone (written here, independently of graph_data's collate).
GraphBatch single(const GraphBatch& b, int64_t i) {
  const int64_t lo = b.ptr[i].item<int64_t>(), hi = b.ptr[i + 1].item<int64_t>();
  torch::Tensor dst = b.edge_index[1];
  torch::Tensor keep = ((dst >= lo) & (dst < hi)).nonzero().flatten();
  GraphBatch s;
  s.num_graphs = 1;
  s.edge_index = b.edge_index.index_select(1, keep) - lo;
  if (b.edge_cat.defined()) s.edge_cat = b.edge_cat.index_select(0, keep);
  auto rows = [&](const torch::Tensor& t) { return t.defined() ? t.slice(0, lo, hi) : t; };
  s.node_cat = rows(b.node_cat);
  s.node_attr = rows(b.node_attr);
  s.rwse = rows(b.rwse);
  s.lap_vec = rows(b.lap_vec);
  s.lap_val = rows(b.lap_val);
  s.batch = torch::zeros({hi - lo}, torch::kLong);
  s.ptr = torch::tensor({int64_t(0), hi - lo}, torch::kLong);
  return s;
}

torch::Tensor run(const Model& m, const GraphBatch& b) {
  torch::NoGradGuard ng;
  return m.family().forward_graph(m, b);
}

const char* const kFixtures[] = {"gine", "gatedgcn", "gin_ln"};

TEST(GpsForward, MatchesIndependentReference) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    Io io = load_io(name);
    Model m = load_model(fixture(std::string("gps/") + name));  // folder with config.yaml
    ASSERT_EQ(m.config.family, "gps");
    const torch::Tensor want = io.t.at("logits");
    torch::Tensor got = run(m, io.batch);
    ASSERT_EQ(got.sizes(), want.sizes());
    const double err32 = max_abs_diff(got, want);
    EXPECT_LT(err32, 2e-5 * (1 + want.abs().max().item<double>()));
    // float64: the same computation up to rounding.
    m.to_dtype(torch::kFloat64);
    const double err64 = max_abs_diff(run(m, io.batch), want);
    EXPECT_LT(err64, 1e-10);
    RecordProperty(std::string(name) + "_max_abs_err_f32", concat(err32));
    RecordProperty(std::string(name) + "_max_abs_err_f64", concat(err64));
  }
}

TEST(GpsForward, CkptFilePathLoadsTheSameModel) {
  Model a = load_model(fixture("gps/gine"));
  Model b = load_model(fixture("gps/gine/ckpt/0.ckpt"));  // config.yaml two folders up
  Io io = load_io("gine");
  EXPECT_TRUE(at::equal(run(a, io.batch), run(b, io.batch)));
  EXPECT_EQ(b.config.gps.local_model, "GINE");
  EXPECT_EQ(b.config.gps.node_encoder, "TypeDictNode");
  EXPECT_EQ(b.config.gps.node_vocab, std::vector<int64_t>{5});
  EXPECT_EQ(b.config.gps.rwse_steps, 4);
  EXPECT_EQ(b.config.num_labels, 3);
  EXPECT_EQ(b.config.gps.task, "classification");
  Model g = load_model(fixture("gps/gatedgcn"));
  EXPECT_EQ(g.config.gps.task, "binary");
  EXPECT_EQ(g.config.gps.lappe_k, 3);
  EXPECT_EQ(g.config.gps.pooling, "mean");
  EXPECT_EQ(load_model(fixture("gps/gin_ln")).config.norm, "graph_layernorm");
}

TEST(GpsForward, EachGraphAloneEqualsItsRowInTheBatch) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    Io io = load_io(name);
    Model m = load_model(fixture(std::string("gps/") + name));
    m.to_dtype(torch::kFloat64);
    torch::Tensor all = run(m, io.batch);
    for (int64_t i = 0; i < io.batch.num_graphs; ++i) {
      SCOPED_TRACE(i);
      torch::Tensor alone = run(m, single(io.batch, i));
      EXPECT_LT(max_abs_diff(alone[0], all[i]), 1e-10);
      EXPECT_LT(max_abs_diff(alone[0], io.t.at("logits_g" + std::to_string(i))[0]), 1e-10);
    }
  }
}

TEST(GpsForward, RaggedAttentionEqualsThePaddedLayout) {
  // Without hooks, inference runs each graph's attention on its own node rows (the fused ranged
  // kernel, when head_dim is a multiple of 8); a hook sends it through the padded layout.
  int fused = 0;
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    Io io = load_io(name);
    Model m = load_model(fixture(std::string("gps/") + name));
    fused += m.config.layers[0].head_dim % 8 == 0;
    const torch::Tensor ragged = run(m, io.batch);
    m.hooks.observers.push_back([](HookPoint, int64_t, torch::Tensor&) {});
    const torch::Tensor padded = run(m, io.batch);
    EXPECT_LT(max_abs_diff(ragged, padded), 2e-5 * (1 + padded.abs().max().item<double>()));
  }
  EXPECT_GT(fused, 0) << "no fixture exercises the fused ranged kernel";
}

TEST(GpsForward, HooksSeeNodesAttentionAndLogits) {
  Io io = load_io("gine");
  Model m = load_model(fixture("gps/gine"));
  std::vector<std::vector<int64_t>> residual, probs;
  int logits = 0;
  m.hooks.observers.push_back([&](HookPoint p, int64_t, torch::Tensor& t) {
    if (p == HookPoint::kResidual) residual.push_back(t.sizes().vec());
    if (p == HookPoint::kAttnProbs) probs.push_back(t.sizes().vec());
    if (p == HookPoint::kLogits) ++logits;
  });
  run(m, io.batch);
  const int64_t N = io.batch.num_nodes();
  EXPECT_EQ(residual.size(), 5u);  // 2 per layer + head input
  for (const auto& r : residual) EXPECT_EQ(r, (std::vector<int64_t>{N, 16}));
  ASSERT_EQ(probs.size(), 2u);
  EXPECT_EQ(probs[0], (std::vector<int64_t>{3, 2, 4, 4}));  // G, heads, n_max, n_max
  EXPECT_EQ(logits, 1);
}

// ---- the ZINC layout
// -----------------------------------------------------------------------------

// GraphGPS configs/GPS/zinc-GPS+RWSE.yaml (the keys pare reads).
const char* const kZincYaml = R"(dataset:
  format: PyG-ZINC
  name: subset
  task: graph
  task_type: regression
  node_encoder: True
  node_encoder_name: TypeDictNode+RWSE
  node_encoder_num_types: 28
  node_encoder_bn: False
  edge_encoder: True
  edge_encoder_name: TypeDictEdge
  edge_encoder_num_types: 4
  edge_encoder_bn: False
posenc_RWSE:
  enable: True
  kernel:
    times_func: range(1,21)
  model: Linear
  dim_pe: 28
  raw_norm_type: BatchNorm
model:
  type: GPSModel
  loss_fun: l1
  graph_pooling: add
gt:
  layer_type: GINE+Transformer
  layers: 10
  n_heads: 4
  dim_hidden: 64
  dropout: 0.0
  attn_dropout: 0.5
  layer_norm: False
  batch_norm: True
gnn:
  head: san_graph
  layers_pre_mp: 0
  layers_post_mp: 3
  dim_inner: 64
  batchnorm: True
  act: relu
)";

// GraphGym model_state names and shapes of the ZINC model, spelled out here (not from gps.cpp).
std::map<std::string, std::vector<int64_t>> zinc_state_shapes() {
  std::map<std::string, std::vector<int64_t>> s;
  const std::string ne = "model.encoder.node_encoder.";
  s[ne + "encoder1.encoder.weight"] = {28, 36};
  for (const char* p : {"weight", "bias", "running_mean", "running_var"})
    s[ne + "encoder2.raw_norm." + p] = {20};
  s[ne + "encoder2.raw_norm.num_batches_tracked"] = {};
  s[ne + "encoder2.pe_encoder.weight"] = {28, 20};
  s[ne + "encoder2.pe_encoder.bias"] = {28};
  s["model.encoder.edge_encoder.encoder.weight"] = {4, 64};
  for (int l = 0; l < 10; ++l) {
    const std::string L = "model.layers." + std::to_string(l) + ".";
    s[L + "local_model.eps"] = {1};
    for (const char* n : {"nn.0", "nn.2"}) {
      s[L + "local_model." + n + ".weight"] = {64, 64};
      s[L + "local_model." + n + ".bias"] = {64};
    }
    s[L + "self_attn.in_proj_weight"] = {192, 64};
    s[L + "self_attn.in_proj_bias"] = {192};
    s[L + "self_attn.out_proj.weight"] = {64, 64};
    s[L + "self_attn.out_proj.bias"] = {64};
    for (const char* n : {"norm1_local", "norm1_attn", "norm2"}) {
      for (const char* p : {"weight", "bias", "running_mean", "running_var"})
        s[L + n + "." + p] = {64};
      s[L + n + ".num_batches_tracked"] = {};
    }
    s[L + "ff_linear1.weight"] = {128, 64};
    s[L + "ff_linear1.bias"] = {128};
    s[L + "ff_linear2.weight"] = {64, 128};
    s[L + "ff_linear2.bias"] = {64};
  }
  s["model.post_mp.FC_layers.0.weight"] = {32, 64};
  s["model.post_mp.FC_layers.0.bias"] = {32};
  s["model.post_mp.FC_layers.1.weight"] = {16, 32};
  s["model.post_mp.FC_layers.1.bias"] = {16};
  s["model.post_mp.FC_layers.2.weight"] = {1, 16};
  s["model.post_mp.FC_layers.2.bias"] = {1};
  return s;
}

std::map<std::string, torch::Tensor> zinc_state() {
  torch::manual_seed(0);
  std::map<std::string, torch::Tensor> t;
  for (const auto& [k, shape] : zinc_state_shapes()) {
    if (k.find("num_batches_tracked") != std::string::npos)
      t[k] = torch::tensor(int64_t(100));
    else if (k.find("running_var") != std::string::npos)
      t[k] = torch::rand(shape) + 0.5;
    else
      t[k] = torch::randn(shape) * 0.1;
  }
  return t;
}

TEST(GpsCheckpoint, ZincLayoutLoadsWith423717Parameters) {
  TempDir tmp;
  write_bytes(tmp.file("config.yaml"), kZincYaml);
  auto state = zinc_state();
  ArchConfig c = gps_config_from_graphgym(tmp.file("config.yaml"), state);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.gps.rwse_steps, 20);
  EXPECT_EQ(c.gps.rwse_dim, 28);
  EXPECT_EQ(c.gps.task, "regression");
  EXPECT_EQ(c.num_labels, 1);
  Model m = gps_from_graphgym_state(c, state, "zinc");
  // GraphGPS counts trained parameters: BatchNorm running statistics and GINE's ε are buffers.
  int64_t buffers = 0;
  for (const auto& [name, t] : m.flat_tensors())
    if (m.family().is_buffer(name)) buffers += t.numel();
  EXPECT_EQ(buffers, 10 * 3 * 2 * 64 + 2 * 20 + 10);
  EXPECT_EQ(m.num_params(), 423717);  // num_params() leaves buffers out
  int64_t rows = 0;
  for (const auto& r : m.family().costs(m)) rows += r.params;
  EXPECT_EQ(rows, 423717);
  // Every checkpoint tensor is used: pare's names map back to GraphGym's.
  auto names = m.family().to_checkpoint(m);
  for (const auto& [k, shape] : zinc_state_shapes()) {
    if (k.find("num_batches_tracked") != std::string::npos) continue;
    const std::string bare = k.substr(6);
    ASSERT_TRUE(names.count(bare)) << bare;
    EXPECT_TRUE(at::equal(names.at(bare), state.at(k))) << bare;
  }
  EXPECT_EQ(names.size() + 1 + 30, zinc_state_shapes().size());  // minus num_batches_tracked
}

// GraphGPS configs/GPS/ogbg-molhiv-GPS+RWSE.yaml: GatedGCN + Transformer, Atom+RWSE (16 steps,
// dim_pe 16), Bond, mean pooling: 558,673 trained parameters (METHODS.md: about 559k).
TEST(GpsCheckpoint, MolhivConfigParameterCount) {
  TempDir tmp;
  std::string yaml = kZincYaml;
  auto set = [&](const std::string& from, const std::string& to) {
    const auto at = yaml.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    yaml.replace(at, from.size(), to);
  };
  set("format: PyG-ZINC", "format: OGB");
  set("name: subset", "name: ogbg-molhiv");
  set("task_type: regression", "task_type: classification");
  set("TypeDictNode+RWSE", "Atom+RWSE");
  set("edge_encoder_name: TypeDictEdge", "edge_encoder_name: Bond");
  set("range(1,21)", "range(1,17)");
  set("dim_pe: 28", "dim_pe: 16");
  set("graph_pooling: add", "graph_pooling: mean");
  set("GINE+Transformer", "CustomGatedGCN+Transformer");
  write_bytes(tmp.file("config.yaml"), yaml);
  ArchConfig c = gps_config_from_graphgym(
      tmp.file("config.yaml"), {{"model.post_mp.FC_layers.2.weight", torch::zeros({1, 16})}});
  EXPECT_EQ(c.gps.task, "binary");
  EXPECT_EQ(c.gps.node_vocab, (std::vector<int64_t>{119, 5, 12, 12, 10, 6, 6, 2, 2}));
  EXPECT_EQ(c.gps.edge_vocab, (std::vector<int64_t>{5, 6, 2}));
  EXPECT_EQ(c.gps.mean_nodes, 0);  // no statistics known for this data set
  Model m = gps_family().init(c, 0);
  int64_t params = 0;
  for (const auto& r : m.family().costs(m)) params += r.params;
  EXPECT_EQ(params, 558673);
}

TEST(GpsCheckpoint, ZincFlopsByHand) {
  TempDir tmp;
  write_bytes(tmp.file("config.yaml"), kZincYaml);
  auto state = zinc_state();
  Model m = gps_from_graphgym_state(gps_config_from_graphgym(tmp.file("config.yaml"), state), state,
                                    "zinc");
  const double n = 23.117;  // ZINC subset test split: mean nodes per graph
  EXPECT_EQ(m.config.gps.mean_nodes, n);
  auto rows = m.family().costs(m);
  ASSERT_EQ(rows.size(), 12u);
  EXPECT_EQ(rows[0].flops, std::llround(2 * n * 20 * 28));  // RWSE linear; embeddings are lookups
  // GINE nn 2·64², Q/K/V/O 4·64², FFN 2·64·128 per node; QKᵀ and AV 2·4·n²·16.
  const double layer = n * (2 * 64 * 64 + 4 * 64 * 64 + 2 * 64 * 128) + 2.0 * 4 * n * n * 16;
  EXPECT_EQ(rows[1].flops, std::llround(2 * layer));
  EXPECT_EQ(rows[1].heads, 4);
  EXPECT_EQ(rows[1].tokens, 23);
  EXPECT_EQ(rows[11].flops, 2 * (64 * 32 + 32 * 16 + 16 * 1));
  // GatedGCN adds the edge linear C per directed edge.
  Model g = load_model(fixture("gps/gatedgcn"));
  g.config.gps.mean_nodes = 10;
  g.config.gps.mean_edges = 20;
  const auto gr = g.family().costs(g);
  const double gl =
      10.0 * (4 * 16 * 16 + 4 * 16 * 16 + 2 * 16 * 32) + 20.0 * 16 * 16 + 2.0 * 2 * 100 * 8;
  EXPECT_EQ(gr[1].flops, std::llround(2 * gl));
}

TEST(GpsCheckpoint, ZincModelRunsOnAGraph) {
  TempDir tmp;
  write_bytes(tmp.file("config.yaml"), kZincYaml);
  auto state = zinc_state();
  Model m = gps_from_graphgym_state(gps_config_from_graphgym(tmp.file("config.yaml"), state), state,
                                    "zinc");
  GraphBatch b;
  b.num_graphs = 1;
  b.node_cat = torch::tensor({0, 3, 27}, torch::kLong).view({3, 1});
  b.edge_index = torch::tensor({0, 1, 1, 2, 1, 0, 2, 1}, torch::kLong).view({2, 4});
  b.edge_cat = torch::tensor({1, 1, 2, 2}, torch::kLong).view({4, 1});
  b.batch = torch::zeros({3}, torch::kLong);
  b.ptr = torch::tensor({0, 3}, torch::kLong);
  b.rwse = torch::rand({3, 20});
  torch::Tensor y = run(m, b);
  EXPECT_EQ(y.sizes(), (c10::IntArrayRef{1, 1}));
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
}

// ---- bad input
// -----------------------------------------------------------------------------------

// A copy of fixture folder `name` (config.yaml + ckpt/0.ckpt) in `tmp`, config.yaml edited by
// replacing `from` with `to`.
void copy_fixture(const TempDir& tmp, const std::string& name, const std::string& from = "",
                  const std::string& to = "") {
  std::string yaml = read_bytes(fixture("gps/" + name + "/config.yaml"));
  if (!from.empty()) {
    const auto at = yaml.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    yaml.replace(at, from.size(), to);
  }
  write_bytes(tmp.file("config.yaml"), yaml);
  fs::create_directories(tmp.file("ckpt"));
  write_bytes(tmp.file("ckpt/0.ckpt"), read_bytes(fixture("gps/" + name + "/ckpt/0.ckpt")));
}

TEST(GpsBadInput, ConfigYamlDisagreesWithTheWeights) {
  TempDir tmp;
  copy_fixture(tmp, "gine", "dim_hidden: 16", "dim_hidden: 32");
  {  // gnn.dim_inner must follow
    std::string y = read_bytes(tmp.file("config.yaml"));
    y.replace(y.find("dim_inner: 16"), 13, "dim_inner: 32");
    write_bytes(tmp.file("config.yaml"), y);
  }
  const std::string msg = input_error_message([&] { load_model(tmp.path()); });
  EXPECT_THAT(msg,
              AllOf(HasSubstr("0.ckpt: tensor 'model."), HasSubstr("expected [3, 32], got [3, 16]"),
                    HasSubstr("config.yaml disagrees with the weights"), Not(HasSubstr("\n"))));
  copy_fixture(tmp, "gine", "dim_inner: 16", "dim_inner: 32");
  EXPECT_INPUT_ERROR(load_model(tmp.path()),
                     HasSubstr("gnn.dim_inner (32) must equal gt.dim_hidden (16)"));
}

TEST(GpsBadInput, UnsupportedConfigKeysAreNamed) {
  TempDir tmp;
  copy_fixture(tmp, "gine", "GINE+Transformer", "GAT+Transformer");
  EXPECT_INPUT_ERROR(
      load_model(tmp.path()),
      AllOf(HasSubstr("config.yaml: gt.layer_type 'GAT+Transformer'"), HasSubstr("not supported")));
  copy_fixture(tmp, "gine", "TypeDictNode+RWSE", "TypeDictNode+SignNet");
  EXPECT_INPUT_ERROR(load_model(tmp.path()),
                     HasSubstr("dataset.node_encoder_name 'TypeDictNode+SignNet'"));
  copy_fixture(tmp, "gine", "head: san_graph", "head: default");
  EXPECT_INPUT_ERROR(load_model(tmp.path()), HasSubstr("gnn.head 'default' is not supported"));
  copy_fixture(tmp, "gine", "  model: Linear", "  model: mlp");
  EXPECT_INPUT_ERROR(load_model(tmp.path()), HasSubstr("posenc_RWSE.model 'mlp'"));
  copy_fixture(tmp, "gine", "layers: 2\n  n_heads: 2\n", "layers: 3\n  n_heads: 2\n");  // gt.layers
  EXPECT_INPUT_ERROR(load_model(tmp.path()), AllOf(HasSubstr("missing tensors: model.layers.2."),
                                                   HasSubstr("in_proj_weight")));
}

TEST(GpsBadInput, ForbiddenPickleGlobalIsRefused) {
  TempDir tmp;
  copy_fixture(tmp, "gine");
  write_bytes(tmp.file("ckpt/0.ckpt"), read_bytes(fixture("pickle/forbidden_global.pt")));
  EXPECT_INPUT_ERROR(load_model(tmp.path()),
                     AllOf(HasSubstr("0.ckpt"), HasSubstr("refusing global")));
}

TEST(GpsBadInput, MissingAndUnexpectedTensorsAreListed) {
  TempDir tmp;
  write_bytes(tmp.file("config.yaml"), kZincYaml);
  auto state = zinc_state();
  ArchConfig c = gps_config_from_graphgym(tmp.file("config.yaml"), state);
  auto cut = state;
  cut.erase("model.layers.3.ff_linear1.weight");
  cut["model.layers.3.extra.weight"] = torch::zeros({2});
  EXPECT_INPUT_ERROR(gps_from_graphgym_state(c, cut, "z.ckpt"),
                     HasSubstr("z.ckpt: missing tensors: model.layers.3.ff_linear1.weight"));
  cut["model.layers.3.ff_linear1.weight"] = state.at("model.layers.3.ff_linear1.weight");
  EXPECT_INPUT_ERROR(gps_from_graphgym_state(c, cut, "z.ckpt"),
                     HasSubstr("z.ckpt: unexpected tensors: model.layers.3.extra.weight"));
  auto bad = state;
  bad["model.layers.0.self_attn.in_proj_weight"] = torch::zeros({96, 64});
  EXPECT_INPUT_ERROR(
      gps_from_graphgym_state(c, bad, "z.ckpt"),
      HasSubstr(
          "tensor 'model.layers.0.self_attn.in_proj_weight': expected [192, 64], got [96, 64]"));
}

TEST(GpsBadInput, BadBatchesAndTensorInputs) {
  Model m = load_model(fixture("gps/gine"));
  Io io = load_io("gine");
  EXPECT_INPUT_ERROR(m.forward(torch::zeros({1, 3})), HasSubstr("graph inputs"));
  EXPECT_INPUT_ERROR(family_by_name("vit").embed_graph(m, io.batch),
                     HasSubstr("family vit does not take graph inputs"));
  GraphBatch b = io.batch;
  b.node_cat = b.node_cat.clone();
  b.node_cat[0][0] = 5;  // vocabulary 0..4
  EXPECT_INPUT_ERROR(
      run(m, b),
      HasSubstr("node_cat column 0 holds category 5, outside the encoder's vocabulary 0..4"));
  b = io.batch;
  b.rwse = torch::Tensor();
  EXPECT_INPUT_ERROR(run(m, b), HasSubstr("RWSE needs rwse"));
  b = io.batch;
  b.edge_index = b.edge_index.clone();
  b.edge_index[0][0] = 5;  // node 5 is in graph 2, its target in graph 0
  EXPECT_INPUT_ERROR(run(m, b), HasSubstr("edge between two different graphs"));
}

// ---- pare's own format
// -----------------------------------------------------------------------------

TEST(GpsCheckpoint, SaveLoadRoundTripGivesIdenticalOutputs) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    Model m = load_model(fixture(std::string("gps/") + name));
    Io io = load_io(name);
    TempDir tmp;
    save_model(m, tmp.path());
    Model back = load_model(tmp.path());
    EXPECT_TRUE(back.config.gps == m.config.gps);
    EXPECT_EQ(back.config.norm, m.config.norm);
    EXPECT_EQ(back.config.layers, m.config.layers);
    EXPECT_TRUE(at::equal(run(back, io.batch), run(m, io.batch)));
    // GraphGym's names without "model." (GPSModel.load_state_dict reads them), no step counters.
    const std::string bytes = read_bytes(tmp.file("model.safetensors"));
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = len << 8 | static_cast<unsigned char>(bytes[i]);
    const auto header = nlohmann::json::parse(bytes.substr(8, len));
    EXPECT_TRUE(header.contains("layers.0.self_attn.in_proj_weight"));
    EXPECT_TRUE(header.contains("post_mp.FC_layers.2.bias"));
    for (auto it = header.begin(); it != header.end(); ++it) {
      EXPECT_THAT(it.key(), Not(HasSubstr("num_batches_tracked")));
      EXPECT_NE(it.key().rfind("model.", 0), 0u) << it.key();
    }
  }
}

TEST(GpsConfig, JsonRoundTripAndChecks) {
  Model m = load_model(fixture("gps/gatedgcn"));
  m.config.gps.stats_dataset = "molhiv";
  m.config.gps.mean_nodes = 25.5;
  m.config.gps.mean_edges = 54.9;
  m.config.gps.max_nodes = 222;
  m.config.gps.max_edges = 502;
  nlohmann::json j = config_to_json(m.config);
  EXPECT_EQ(j["model_type"], "gps");
  EXPECT_EQ(j["gps"]["local_model"], "CustomGatedGCN");
  EXPECT_EQ(j["pare"]["norm"], "batchnorm");
  ArchConfig back = config_from_json(j, "c.json");
  EXPECT_TRUE(back.gps == m.config.gps);
  EXPECT_FALSE(back.is_lm());
  EXPECT_TRUE(back.is_graph());
  EXPECT_EQ(back.seq_len(), 26);
  EXPECT_EQ(back.num_patches(), 0);
  EXPECT_EQ(config_to_json(back), j);
  auto bad = j;
  bad["gps"]["local_modle"] = "GIN";
  EXPECT_INPUT_ERROR(config_from_json(bad, "c.json"),
                     HasSubstr("c.json: gps.local_modle: unknown key"));
  bad = j;
  bad["gps"]["edge_encoder"] = "None";
  bad["gps"]["edge_vocab"] = nlohmann::json::array();
  EXPECT_INPUT_ERROR(config_from_json(bad, "c.json"),
                     HasSubstr("gps.edge_encoder: CustomGatedGCN needs edge features"));
  bad = j;
  bad["gps"]["rwse_dim"] = 20;  // with lappe_dim 4 and hidden 16: no room for the node embedding
  EXPECT_INPUT_ERROR(config_from_json(bad, "c.json"),
                     HasSubstr("must leave room for the node embedding"));
  // Node pruning: graph steps take a keep rate (node counts differ between graphs).
  bad = j;
  nlohmann::json step = {{"layer", 0}, {"keep", 2}};
  bad["pare"]["token_pruning"] = nlohmann::json::array({step});
  EXPECT_INPUT_ERROR(config_from_json(bad, "c.json"),
                     HasSubstr("c.json: pare.token_pruning[0].keep_rate: expected a share"));
  auto good = j;
  good["pare"]["token_pruning"] = nlohmann::json::array(
      {{{"layer", 0}, {"keep_rate", 0.5}, {"similar_rate", 0.25}, {"method", "zero-tprune"}}});
  const ArchConfig pruned = config_from_json(good, "c.json");
  ASSERT_EQ(pruned.token_pruning.size(), 1u);
  EXPECT_DOUBLE_EQ(pruned.token_pruning[0].keep_rate, 0.5);
  EXPECT_DOUBLE_EQ(pruned.token_pruning[0].similar_rate, 0.25);
  EXPECT_EQ(config_from_json(config_to_json(pruned), "c.json").token_pruning, pruned.token_pruning);
  bad = good;
  bad["pare"]["token_pruning"][0]["method"] = "cls-attention";
  EXPECT_INPUT_ERROR(config_from_json(bad, "c.json"),
                     HasSubstr("expected zero-tprune, random, attention or learned (graphs have no CLS)"));
  bad = good;
  bad["pare"]["token_pruning"][0]["keep_rate"] = 1.5;
  EXPECT_INPUT_ERROR(config_from_json(bad, "c.json"), HasSubstr("in (0, 1], got 1.5"));
}

TEST(GpsModel, InitVerifiesAndRuns) {
  ArchConfig c = gps_default_config();
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_labels = 2;
  c.gps.node_vocab = {7};
  c.gps.edge_vocab = {3};
  c.gps.rwse_steps = 8;
  c.gps.rwse_dim = 8;
  c.finalize("test");
  EXPECT_EQ(c.intermediate_size, 64);
  Model m = gps_family().init(c, 1);
  EXPECT_TRUE(m.verify().empty());
  Io io = load_io("gine");
  GraphBatch b = io.batch;
  b.rwse = torch::rand({b.num_nodes(), 8});
  EXPECT_EQ(run(m, b).sizes(), (c10::IntArrayRef{3, 2}));
}

// Pruning head 0 of layer 0 equals zeroing its share of the output projection.
TEST(GpsModel, HeadAndFfnPruningThroughTheRewriter) {
  Model m = load_model(fixture("gps/gine"));
  m.to_dtype(torch::kFloat64);
  Io io = load_io("gine");
  Model zeroed = m.clone();
  zeroed.at("blk.0.attn_o.weight").slice(1, 0, 8).zero_();  // head_dim 8
  zeroed.at("blk.1.ffn_down.weight").slice(1, 0, 1).zero_();
  Rewriter rw(m);
  rw.keep("blk.0.heads", {1});
  std::vector<int64_t> rest(31);
  for (int i = 0; i < 31; ++i) rest[i] = i + 1;
  rw.keep("blk.1.ffn", rest);
  EXPECT_EQ(m.config.layers[0].heads, 1);
  EXPECT_EQ(m.config.layers[1].intermediate_size, 31);
  EXPECT_TRUE(m.verify().empty());
  EXPECT_LT(max_abs_diff(run(m, io.batch), run(zeroed, io.batch)), 1e-10);
  m.to_dtype(torch::kFloat32);  // as saved
  TempDir tmp;
  save_model(m, tmp.path());
  Model back = load_model(tmp.path());
  EXPECT_EQ(back.config.layers[0].heads, 1);
  EXPECT_TRUE(at::equal(run(back, io.batch), run(m, io.batch)));
}

}  // namespace

// ---- node pruning (Zero-TPrune and baselines on the global attention)

TokenPruneStep node_step(int64_t layer, double rate, const std::string& method, double similar) {
  TokenPruneStep st;
  st.layer = layer;
  st.keep_rate = rate;
  st.similar_rate = similar;
  st.method = method;
  st.iterations = 3;
  return st;
}

TEST(GpsNodePruning, StepAtTheLastLayerChangesNothing) {
  // The step runs after the layer's attention, so at the last layer no later attention is
  // affected: logits equal the dense ones (max pooling rebuilds the layout of all nodes).
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    Io io = load_io(name);
    Model m = load_model(fixture(std::string("gps/") + name));
    m.to_dtype(torch::kFloat64);
    const torch::Tensor dense = run(m, io.batch);
    m.config.token_pruning = {node_step(1, 0.5, "zero-tprune", 0.5)};
    m.config.finalize("test");
    EXPECT_LT(max_abs_diff(run(m, io.batch), dense), 1e-12);
  }
}

TEST(GpsNodePruning, EachGraphAloneEqualsItsRowInThePrunedBatch) {
  // Selection is per graph over its own nodes: padding is never ranked or kept, so a graph's
  // logits do not depend on the other graphs of its batch. And dropping nodes changes them.
  for (const char* name : kFixtures)
    for (const char* method : {"zero-tprune", "attention", "random"}) {
      SCOPED_TRACE(std::string(name) + " " + method);
      Io io = load_io(name);
      Model m = load_model(fixture(std::string("gps/") + name));
      m.to_dtype(torch::kFloat64);
      const torch::Tensor dense = run(m, io.batch);
      m.config.token_pruning = {node_step(0, 0.5, method, 0.5)};
      m.config.finalize("test");
      const torch::Tensor all = run(m, io.batch);
      EXPECT_GT(max_abs_diff(all, dense), 1e-6);
      if (std::string(method) == "random") continue;  // one draw per batch, not per graph
      for (int64_t i = 0; i < io.batch.num_graphs; ++i)
        EXPECT_LT(max_abs_diff(run(m, single(io.batch, i))[0], all[i]), 1e-10) << "graph " << i;
    }
}

TEST(GpsNodePruning, LaterAttentionSeesEachGraphsRoundedKeepCount) {
  Io io = load_io("gatedgcn");
  Model m = load_model(fixture("gps/gatedgcn"));
  m.to_dtype(torch::kFloat64);
  m.config.token_pruning = {node_step(0, 0.6, "attention", 0)};
  m.config.finalize("test");
  std::vector<torch::Tensor> probs;
  m.hooks.observers.push_back([&](HookPoint p, int64_t, torch::Tensor& t) {
    if (p == HookPoint::kAttnProbs) probs.push_back(t.clone());
  });
  run(m, io.batch);
  ASSERT_EQ(probs.size(), 2u);
  const int64_t G = io.batch.num_graphs;
  int64_t k_max = 0;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t n = (io.batch.ptr[g + 1] - io.batch.ptr[g]).item<int64_t>();
    const int64_t keep = std::max<int64_t>(1, std::llround(0.6 * double(n)));
    k_max = std::max(k_max, keep);
    // Layer 1: the key columns a query of graph g attends to (padding columns get exactly 0).
    const int64_t cols = (probs[1][g][0][0] > 0).sum().item<int64_t>();
    EXPECT_EQ(cols, keep) << "graph " << g << " of " << n << " nodes";
  }
  EXPECT_EQ(probs[1].size(2), k_max);
}

TEST(GpsNodePruning, FlopsByHand) {
  // gatedgcn fixture: hidden 16, 2 heads of 8, 2 layers. At n = 10 nodes, keep rate 0.5 at
  // layer 0 with the attention baseline: layer 1's global attention runs on 5 nodes (Q/K/V/O
  // 4·16² per node, QKᵀ and AV 2·2·n²·8), and layer 0 pays the selection, heads·n² = 2·100.
  Model m = load_model(fixture("gps/gatedgcn"));
  m.config.gps.mean_nodes = 10;
  m.config.gps.mean_edges = 20;
  const auto dense = m.family().costs(m);
  m.config.token_pruning = {node_step(0, 0.5, "attention", 0)};
  m.config.finalize("test");
  const auto pruned = m.family().costs(m);
  EXPECT_EQ(pruned[1].flops - dense[1].flops, 2 * 2 * 100);
  const double saved = (10 - 5) * 4.0 * 16 * 16 + 2.0 * 2 * (100 - 25) * 8;
  EXPECT_EQ(dense[2].flops - pruned[2].flops, std::llround(2 * saved));
  EXPECT_EQ(pruned[2].tokens, 5);
  EXPECT_EQ(pruned[1].tokens, 10);
  EXPECT_EQ(pruned[1].tokens_out, 5);
  // A fractional mean: the attending count interpolates between the neighbouring sizes (5 at
  // 10 nodes, 6 at 11: 5.5 at 10.5), and the quadratic terms are taken at the means, as without
  // pruning.
  m.config.gps.mean_nodes = 10.5;
  const auto half = m.family().costs(m);
  const auto steps = m.config.token_pruning;
  m.config.token_pruning.clear();
  const auto dense_half = m.family().costs(m);
  const double saved_half = (10.5 - 5.5) * 4.0 * 16 * 16 + 2.0 * 2 * (10.5 * 10.5 - 5.5 * 5.5) * 8;
  EXPECT_EQ(dense_half[2].flops - half[2].flops, std::llround(2 * saved_half));
}
