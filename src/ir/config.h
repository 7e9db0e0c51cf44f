// ArchConfig: the architecture of a model, per layer (pruning makes layers differ).
//
// Serialised as config.json with Hugging Face field names (ViT: hidden_size, num_hidden_layers,
// num_attention_heads, intermediate_size, image_size, patch_size, num_channels, layer_norm_eps,
// id2label, ...) plus a "pare" section holding what HF cannot express: per-layer heads / head_dim /
// intermediate size / residual widths, the norm form after SliceGPT folding, shortcut matrices and
// the history of passes. A config without a "pare" section (a plain HF checkpoint) gets its
// per-layer dimensions from the HF fields.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace pare {

// Weight-only quantization format of one linear slot (quantize pass; src/quant_linear.h):
// unsigned `bits`-bit codes, one scale (and, asymmetric, one zero point) per output row and group
// of `group_size` input columns.
struct QuantSlot {
  int64_t bits = 8;        // 4 or 8
  int64_t group_size = 0;  // input columns per group; 0 = the whole input width (per channel)
  bool symmetric = true;   // symmetric: implicit zero point 2^(bits-1); else stored per group
  bool operator==(const QuantSlot& o) const {
    return bits == o.bits && group_size == o.group_size && symmetric == o.symmetric;
  }
};

// Dimensions of one transformer block. Residual widths are per "site": the input of the
// attention sub-block (attn_in) and of the MLP sub-block (mlp_in); both equal hidden_size in a
// dense model and shrink under SliceGPT.
struct LayerDims {
  int64_t heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t attn_in = 0;
  int64_t mlp_in = 0;
  int64_t kv_heads = 0;  // key/value heads (grouped-query attention); = heads without GQA
  // Whole branches removed (masks/ materialisation, issue 19; vit and gps only): without its
  // attention branch a layer has no attention norm (vit), Q/K/V/O or heads (heads = kv_heads = 0)
  // and adds nothing there (gps: its global-attention half is Norm_attn(h) alone); without its
  // FFN branch, no FFN norm (vit), ffn_up / ffn_down (intermediate_size = 0). heads = 0 with the
  // branch present is the bias-only attention that deleting every head leaves (O's bias added).
  // config.json: pare.layers[i].attention / .ffn, written only when false.
  bool attention = true;
  bool ffn = true;
  bool operator==(const LayerDims& o) const {
    return heads == o.heads && kv_heads == o.kv_heads && head_dim == o.head_dim &&
           intermediate_size == o.intermediate_size && attn_in == o.attn_in && mlp_in == o.mlp_in &&
           attention == o.attention && ffn == o.ffn;
  }
};

// One token-pruning step (Zero-TPrune and its baselines, src/token_pruning.h): inside layer
// `layer`, after the attention probabilities are known and before the output projection, the
// batch keeps `keep` tokens per sequence (special tokens included; fixed k keeps the batch
// rectangular). Later sub-blocks and layers run on the kept tokens only.
struct TokenPruneStep {
  int64_t layer = 0;
  int64_t keep = 0;                    // tokens kept (CLS included); vit
  // Graphs (gps), whose node counts differ: each graph keeps round(keep_rate · n) of the n nodes
  // entering the step (at least 1), and the S stage picks round(similar_rate · dropped) of them.
  double keep_rate = 0, similar_rate = 0;
  // zero-tprune | random | cls-attention | attention | learned. "learned" (GTSP's node
  // sparsification, passes/gtsp.cpp): tokens ranked by a trained linear scorer of the layer's
  // input residual, tensors blk.L.token_score.weight [attn_in] and .bias [1] (score = x·w + b;
  // the top `keep` / keep_rate of the candidates, specials always kept, padding never).
  std::string method = "zero-tprune";
  int64_t iterations = 1;              // weighted PageRank iterations (I stage)
  int64_t similar = 0;                 // r: tokens dropped by the S stage (zero-tprune only)
  bool uniform_init = false;           // PageRank start: CLS at sqrt(N)x the others unless set
  uint64_t seed = 0;                   // random baseline
  bool operator==(const TokenPruneStep& o) const {
    return layer == o.layer && keep == o.keep && keep_rate == o.keep_rate &&
           similar_rate == o.similar_rate && method == o.method &&
           iterations == o.iterations && similar == o.similar && uniform_init == o.uniform_init &&
           seed == o.seed;
  }
};

// Graph transformer fields (family gps: GraphGPS, Rampášek et al. NeurIPS 2022; src/gps.h). Names
// follow GraphGym's config keys where one exists (given in brackets). Serialised as the "gps"
// object of config.json.
struct GpsConfig {
  // Local message passing of every layer [gt.layer_type before '+']: GINE (edge features), GIN
  // (none), CustomGatedGCN (GraphGPS GatedGCNLayer; updates the edge features) or None.
  std::string local_model = "GINE";
  // Global attention [gt.layer_type after '+']: Transformer (multi-head attention over the nodes
  // of each graph) or None.
  std::string global_model = "Transformer";
  std::string pooling = "add";  // graph readout [model.graph_pooling]: add, mean or max
  // Node encoder [dataset.node_encoder_name before '+']: TypeDictNode (one embedding of
  // categorical column 0), Atom (OGB AtomEncoder: one embedding per categorical column, summed)
  // or LinearNode (a linear map of the dense node features).
  std::string node_encoder = "TypeDictNode";
  std::vector<int64_t> node_vocab;  // categories per categorical node column (TypeDictNode: one
                                    // [dataset.node_encoder_num_types]; Atom: OGB's nine)
  int64_t node_attr_dims = 0;       // LinearNode: dense node features per node
  // Edge encoder [dataset.edge_encoder_name]: TypeDictEdge (one embedding), Bond (OGB
  // BondEncoder: one per column, summed) or None (no edge features: GIN or None local models).
  std::string edge_encoder = "TypeDictEdge";
  std::vector<int64_t> edge_vocab;  // categories per categorical edge column
  // RWSE [posenc_RWSE]: K random-walk steps (kernel.times), dim_pe output width, BatchNorm over
  // the K raw values first (raw_norm_type BatchNorm). 0 steps: no RWSE.
  int64_t rwse_steps = 0, rwse_dim = 0;
  bool rwse_raw_norm = true;
  // LapPE [posenc_LapPE] with the DeepSet encoder: k eigenpairs (eigen.max_freqs), dim_pe output
  // width, DeepSet layers (1: linear_A 2 -> dim_pe; n >= 2: 2 -> 2 dim_pe, n - 2 hidden,
  // -> dim_pe), BatchNorm over the k channels first (raw_norm_type). 0 eigenpairs: no LapPE.
  int64_t lappe_k = 0, lappe_dim = 0, lappe_layers = 2;
  bool lappe_raw_norm = false;
  // SANGraphHead linear layers: d -> d/2 -> ... -> d/2^(n-1) -> num_labels (GraphGPS: 3).
  int64_t head_layers = 3;
  // classification (num_labels >= 2 logits), binary (one logit, ROC-AUC) or regression
  // (num_labels targets) [dataset.task_type + the output width].
  std::string task = "classification";
  // Graph statistics at which costs() counts FLOPs per graph: nodes and directed edges of the
  // data set named here (0 when unknown: node and edge terms then count 0).
  std::string stats_dataset;
  double mean_nodes = 0, mean_edges = 0;
  int64_t max_nodes = 0, max_edges = 0;
  // The split the model was trained and validated on (src/graph_eval.h), so evaluation uses the
  // same test graphs: "random" (TU data sets: random_split 0.8 / 0.1 / 0.1 with split_seed),
  // "scaffold" (MoleculeNet CSVs: OGB's scaffold split), "all" or "" (unknown: imported models).
  std::string split;
  uint64_t split_seed = 0;
  // Not serialised: BatchNorm in training mode (batch statistics; running statistics updated with
  // momentum 0.1 and the unbiased batch variance, as torch.nn.BatchNorm1d). Set by the trainer.
  bool training = false;
  bool operator==(const GpsConfig& o) const;
};

struct ArchConfig {
  // vit, gps, bert (text encoder), or a decoder LM: llama (qwen2, mistral), opt, gpt2, phi
  std::string family = "vit";
  // The task the model is trained and measured on (tasks/task.h: image-classification,
  // lm-perplexity, graph, ...): empty means the family's own (vit: image-classification, gps:
  // graph, decoder LMs: lm-perplexity); config.json's pare.task records it only when it differs.
  std::string task;
  int64_t hidden_size = 0;          // D of the trained model; the folded RMSNorm divides by it
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;  // HF field (dense models); per-layer values in `layers`
  int64_t intermediate_size = 0;    // HF field (dense models)
  double layer_norm_eps = 1e-12;
  std::string hidden_act = "gelu";  // exact (erf) GELU as HF ViT

  // Images (vit).
  int64_t image_size = 0;
  int64_t patch_size = 0;
  int64_t num_channels = 0;
  int64_t num_labels = 0;  // vit: classes; gps: output width (SANGraphHead dim_out)
  std::vector<std::string> id2label;
  std::vector<double> image_mean;  // per channel, applied by the data loader
  std::vector<double> image_std;

  // Decoder language models (is_lm()). HF names differ per family (config.cpp maps them):
  // llama rms_norm_eps / gpt2 layer_norm_epsilon / phi layer_norm_eps all land in layer_norm_eps;
  // opt ffn_dim and gpt2 n_inner in intermediate_size.
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  int64_t num_key_value_heads = 0;     // HF field; per-layer values in layers[].kv_heads
  double rope_theta = 10000.0;         // RoPE base (llama, phi)
  double partial_rotary_factor = 1.0;  // share of head_dim that RoPE rotates (phi: 0.4 in Phi-2)
  bool tie_word_embeddings = false;    // lm_head shares tok_embd (no lm_head slot then)
  bool attention_bias = false;         // llama family: q/k/v/o biases (qwen2: q/k/v only)
  int64_t bos_token_id = -1, eos_token_id = -1;
  // Tokens per sequence at which costs() counts FLOPs (pare.context_length; decoder LMs: default
  // min(max_position_embeddings, 256); bert: the mean tokenised length of the training sentences
  // when pare trains the model, default min(max_position_embeddings, 128)).
  int64_t context_length = 0;
  // HF config.json fields pare does not interpret, written back unchanged.
  nlohmann::json hf_extra = nlohmann::json::object();
  bool is_lm() const { return family != "vit" && family != "gps" && family != "bert"; }
  bool is_graph() const { return family == "gps"; }  // takes GraphBatch inputs (src/gps.h)
  // Text encoders (bert): token ids in, one label per sequence out (families/bert.h).
  bool is_text_encoder() const { return family == "bert"; }
  // BERT (HF BertConfig): token-type vocabulary (segments; single sentences use type 0) and the
  // padding id, whose positions the attention never reads (families/bert.h).
  int64_t type_vocab_size = 0;
  int64_t pad_token_id = 0;
  // bert with the masked-language-model head of HF BertForMaskedLM (pre-training, tasks/masked_lm.cpp):
  // transform dense + GELU + LayerNorm, then the word embeddings (tied) plus a bias per token.
  // config.json pare.mlm_head, written only when true.
  bool mlm_head = false;

  // Graph transformers (gps). `norm` is "batchnorm" (BatchNorm1d in eval: running statistics) or
  // "graph_layernorm" (PyG LayerNorm in graph mode); every norm uses layer_norm_eps (1e-5).
  GpsConfig gps;
  // Phi: attention and MLP read one norm of the same input and add to the residual together,
  // so a layer has one residual site (mlp_in mirrors attn_in) and one SliceGPT shortcut.
  bool parallel_blocks() const { return family == "phi"; }

  // pare section.
  // "layernorm" (weight+bias), "rmsnorm_affine" (Llama RMSNorm: x·rsqrt(mean x² + eps)·γ) or
  // "rmsnorm" (folded by SliceGPT, no weight: x·rsqrt(Σx²/hidden_size + eps)).
  std::string norm = "layernorm";
  bool shortcuts = false;          // SliceGPT residual shortcut matrices present
  std::vector<LayerDims> layers;   // one per layer
  int64_t out_dim = 0;             // residual width at the head (input of final norm + head)
  nlohmann::json history = nlohmann::json::array();  // passes applied, with options
  // Token pruning applied by every forward, in increasing layer order (empty: none).
  std::vector<TokenPruneStep> token_pruning;
  // Special tokens at the front of the sequence that pruning never drops (CLS for vit; graphs
  // have none).
  int64_t special_tokens() const { return is_graph() ? 0 : 1; }
  // Tokens entering layer l's attention / leaving it (after its pruning step, if any).
  int64_t tokens_in(int64_t layer) const;
  int64_t tokens_out(int64_t layer) const;
  const TokenPruneStep* prune_step(int64_t layer) const;

  int64_t num_patches() const {
    return patch_size > 0 ? (image_size / patch_size) * (image_size / patch_size) : 0;
  }
  // Tokens per input: patches + CLS (vit), context_length (LMs), mean nodes per graph rounded
  // (gps; at least 1).
  int64_t seq_len() const;
  // Residual width at site s: 2l = attention input of layer l, 2l+1 = MLP input of layer l,
  // 2L = head input.
  int64_t site_dim(int64_t s) const;
  void set_site_dim(int64_t s, int64_t d);
  int64_t num_sites() const { return 2 * num_hidden_layers + 1; }
  // True when the HF ViT fields alone describe the model (uniform, unsliced, LayerNorm).
  bool hf_expressible() const;

  // Fills `layers` and `out_dim` from the HF fields when they are empty; validates everything.
  // Throws InputError naming `source` and the field.
  void finalize(const std::string& source);
  void finalize_lm(const std::string& source);  // the decoder-LM fields (config.cpp)
  void finalize_gps(const std::string& source);  // the graph-transformer fields (config.cpp)
  void finalize_bert(const std::string& source);  // the text-encoder fields (config.cpp)

  // Weight-only quantization (pare.quantization): the method that made the codes and the format
  // of every quantized linear slot; both empty when no slot is quantized.
  std::string quant_method;                    // "rtn" or "gptq"
  std::map<std::string, QuantSlot> quantized;  // slot name -> format
};

// config.json <-> ArchConfig. from_json throws InputError("SOURCE: field: expected ..., got ...").
ArchConfig config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json config_to_json(const ArchConfig& c);

// Reads config.json at `path`. For a vit model whose config.json has no pare.image_mean /
// pare.image_std (a Hugging Face checkpoint), the normalisation comes from the
// preprocessor_config.json beside it when there is one (ViTImageProcessor fields: image_mean,
// image_std, do_normalize; do_rescale with rescale_factor 1/255, which is how pare scales uint8
// pixels); without either, 0.5 / 0.5 as Hugging Face's ViT default. InputError naming
// preprocessor_config.json and the field for anything else (not JSON, wrong types, another
// rescale factor, do_rescale false).
ArchConfig load_config(const std::string& path);

// The (image_mean, image_std) a Hugging Face preprocessor_config.json gives (see load_config);
// a single value applies to every channel. do_normalize false gives ({0}, {1}).
std::pair<std::vector<double>, std::vector<double>> read_preprocessor_normalization(
    const std::string& path);

}  // namespace pare
