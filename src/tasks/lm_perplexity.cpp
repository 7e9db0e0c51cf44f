// Task lm-perplexity: a decoder LM measured on a text file (tasks/lm_eval.h): perplexity over
// non-overlapping windows exactly as SliceGPT reports it, and fidelity to a reference model (the
// dense baseline in a compression run, --reference in pare eval): mean KL(reference ‖ model) per
// token and top-1 agreement, as llama.cpp's perplexity --kl-divergence reports quantization damage.
//
// Recipe: data: {dataset: text, path: EVAL TEXT, tokenizer: FILE | FOLDER (default: the model's
// own)}, calibration: {path: TEXT, samples: 128, seq_len: 0 (eval seq_len), seed: 0} (SliceGPT's
// calibration windows at uniform offsets). Training (pare train): data: {text: TRAIN TEXT, test:
// HELD-OUT TEXT (or split: 0.9 of `text`), tokenizer: char | byte}; batches of seq_len + 1 token
// windows at uniform seeded offsets, next-token cross-entropy, by steps (train.steps).
#include <filesystem>

#include "base/error.h"
#include "base/fileio.h"
#include "base/recipe.h"
#include "data/tokenizer.h"
#include "families/family.h"
#include "tasks/lm_data.h"
#include "tasks/lm_eval.h"
#include "tasks/task.h"

namespace pare {
namespace {

class LmPerplexity : public Task {
 public:
  struct Spec {
    std::string path, tokenizer, calibration_path, train_text, test_text;
    double split = 0.9;
    int64_t calib_samples = 128, calib_seq_len = 0;
    uint64_t calib_seed = 0;
  };
  explicit LmPerplexity(Spec s) : s_(std::move(s)) {}

  std::string name() const override { return "lm-perplexity"; }
  std::vector<MetricSpec> metrics() const override {
    return {{"perplexity", "perplexity", "perplexity", false, false, "percent", {"max_increase_pct"}, false, 3},
            {"kl", "KL vs baseline (nats/token)", "nats/token", false, false, "", {"max"}, true, 5},
            {"top1", "top-1 agree %", "fraction", true, true, "", {"min"}, true, 2}};
  }
  std::string flops_unit() const override { return "token"; }
  std::string flops_counted() const override {
    return "2 x MACs of matmuls of one context_length sequence divided by its tokens: Q/K/V/O, "
           "MLP, shortcut matrices, full QK^T and AV, lm_head on every token; norms, softmax, "
           "activations, adds excluded";
  }
  std::string data_path() const override { return s_.path; }

  void load(const Model& m, const std::string& model_path, const EvalSettings& eval, bool calibrate,
            const std::function<void(const std::string&)>& log) override {
    PARE_CHECK(!s_.path.empty(), "/data/path: lm-perplexity needs the evaluation text file");
    tok_ = tokenizer_for_model(model_path, s_.tokenizer, m, how_to_set("tokenizer"));
    model_folder_ = model_path;
    seq_len_ = eval.seq_len > 0 ? eval.seq_len : m.config.context_length;
    const int64_t maxT = m.config.max_position_embeddings;
    PARE_CHECK(maxT <= 0 || seq_len_ <= maxT, "/eval/seq_len: ", seq_len_,
               " exceeds the model's max_position_embeddings (", maxT, ")");
    PARE_CHECK(maxT <= 0 || s_.calib_seq_len <= maxT, "/calibration/seq_len: ", s_.calib_seq_len,
               " exceeds the model's max_position_embeddings (", maxT, ")");
    text_tokens_ = tokenize_file(*tok_, s_.path);
    windows_ = token_windows(text_tokens_, seq_len_, eval.limit, s_.path);
    // Only passes that calibrate (slicegpt, GPTQ) need calibration.path; they refuse without it
    // (calibration()), before anything is written.
    if (calibrate && !s_.calibration_path.empty()) {
      const int64_t cT = s_.calib_seq_len > 0 ? s_.calib_seq_len : seq_len_;
      calib_ = calibration_windows(tokenize_file(*tok_, s_.calibration_path), s_.calib_samples, cT,
                                   s_.calib_seed, s_.calibration_path);
    }
    log(concat(windows_.size(0), " evaluation windows of ", seq_len_, " tokens from ", s_.path));
  }
  std::string describe_markdown() const override {
    std::string s = concat("- evaluation text: ", s_.path, " (", text_tokens_.numel(), " tokens, ",
                           tok_ ? tok_->kind() : std::string("?"), " tokenizer); perplexity over ",
                           windows_.size(0), " non-overlapping windows of ", seq_len_,
                           " tokens; KL / top-1 against the reference (a compression run's baseline) "
                           "on the same tokens\n");
    if (calib_.defined())
      s += concat("- calibration (passes that need it): ", calib_.size(0), " windows of ", calib_.size(1),
                  " tokens of ", s_.calibration_path, ", seed ", s_.calib_seed, "\n");
    return s;
  }
  nlohmann::json describe() const override {
    return {{"name", name()},
            {"data", s_.path},
            {"tokenizer", tok_ ? tok_->kind() : ""},
            {"splits", {{"test", {{"text", s_.path}, {"tokens", text_tokens_.numel()},
                                  {"windows", windows_.size(0)}, {"seq_len", seq_len_}}}}},
            {"calibration", {{"path", s_.calibration_path}, {"samples", s_.calib_samples},
                             {"seq_len", s_.calib_seq_len}, {"seed", s_.calib_seed}}}};
  }

  Measurement measure(const Model& m, const EvalSettings& eval, const Model* reference) const override {
    PARE_ASSERT(windows_.defined(), "lm-perplexity: measure before load");
    LmEvalResult r = evaluate_lm(m, windows_, std::min<int64_t>(eval.batch_size, 16), reference);
    Measurement out;
    out.metrics["perplexity"] = r.perplexity;
    if (r.has_reference) {
      out.metrics["kl"] = r.kl;
      out.metrics["top1"] = r.top1;
    }
    out.samples = r.predicted;
    out.samples_unit = "tokens";
    out.throughput = r.tokens_per_second;
    out.throughput_unit = "tokens/s";
    out.eval_seconds = r.seconds;
    int64_t flops = 0;
    for (const auto& c : m.family().costs(m)) flops += c.flops;
    out.flops = static_cast<double>(flops / m.config.seq_len());  // per token
    return out;
  }

  CalibrationSet calibration(const Model&, const std::string& pass) const override {
    PARE_CHECK(calib_.defined(), pass, ": a language model needs calibration text ",
               "(calibration.path in the recipe)");
    CalibrationSet s;
    s.inputs = calib_;
    return s;
  }
  std::vector<std::pair<std::string, std::string>> model_files() const override {
    if (train_tok_) {
      const std::string json = train_tok_->kind() == "char" ? char_tokenizer_json(*train_tok_)
                                                             : std::string("{\"kind\": \"byte\"}\n");
      return {{"tokenizer.json", json}};
    }
    // A compressed model keeps the tokenizer.json of its folder.
    if (!model_folder_.empty() && std::filesystem::is_directory(model_folder_) &&
        file_exists(model_folder_ + "/tokenizer.json"))
      return {{"tokenizer.json", read_file(model_folder_ + "/tokenizer.json")}};
    return {};
  }

  void prepare_training(nlohmann::json& model, const TrainOptions& o, std::vector<std::string>& problems,
                        const std::function<void(const std::string&)>& log) override {
    if (o.steps <= 0) problems.push_back("/train/steps: expected a positive number of steps");
    if (!problems.empty()) return;
    const std::string kind = s_.tokenizer.empty() ? "char" : s_.tokenizer;
    const std::string text = read_file(s_.train_text);
    PARE_CHECK(!text.empty(), s_.train_text, ": the text file is empty");
    train_tok_ = kind == "byte" ? make_byte_tokenizer() : build_char_tokenizer(text);
    // The data decides the vocabulary when the recipe leaves it out.
    if (!model.contains("vocab_size")) model["vocab_size"] = train_tok_->vocab_size();
    const int64_t vocab = model["vocab_size"].is_number_integer() ? model["vocab_size"].get<int64_t>() : 0;
    PARE_CHECK(train_tok_->vocab_size() <= vocab, "/model/vocab_size ", vocab,
               " is smaller than the ", kind, " tokenizer's ", train_tok_->vocab_size(), " tokens");
    torch::Tensor all = torch::tensor(train_tok_->encode(text), torch::kLong);
    if (s_.test_text.empty()) {
      const int64_t n = static_cast<int64_t>(s_.split * static_cast<double>(all.numel()));
      train_ = all.narrow(0, 0, n);
      test_ = all.narrow(0, n, all.numel() - n);
    } else {
      train_ = all;
      test_ = tokenize_file(*train_tok_, s_.test_text);  // no BOS: these tokenizers have none
    }
    log(concat(train_tok_->vocab_size(), "-token ", kind, " tokenizer, ", train_.numel(),
               " training tokens, ", test_.numel(), " test tokens"));
  }
  TrainPlan begin_training(const Model& m, const TrainOptions& o, torch::Generator&) override {
    PARE_ASSERT(train_.defined(), "lm-perplexity: begin_training before prepare_training");
    PARE_CHECK(o.steps > 0 && o.seq_len >= 2, "train: steps must be positive and seq_len at least 2");
    PARE_CHECK(train_.numel() > o.seq_len + 1, "train: the training text has ", train_.numel(),
               " tokens, too few for windows of ", o.seq_len);
    PARE_CHECK(o.seq_len <= m.config.max_position_embeddings, "/train/seq_len: ", o.seq_len,
               " exceeds the model's max_position_embeddings ", m.config.max_position_embeddings,
               " (default seq_len: 128)");
    opt_ = o;
    offs_ = torch::arange(o.seq_len + 1, torch::kLong).unsqueeze(0);
    return {1, o.steps, "tokens"};
  }
  TaskBatch train_batch(int64_t, torch::Generator& gen) override {
    // Random windows of T+1 tokens: inputs are the first T, targets the last T.
    const int64_t T = opt_.seq_len;
    torch::Tensor starts = torch::randint(train_.numel() - T, {opt_.batch_size}, gen, torch::kLong);
    torch::Tensor w = train_.index({starts.unsqueeze(1) + offs_});
    TaskBatch b;
    b.inputs = w.narrow(1, 0, T);
    b.targets = w.narrow(1, 1, T);
    b.size = opt_.batch_size;
    b.units = opt_.batch_size * T;
    return b;
  }
  torch::Tensor forward(const Model& m, const TaskBatch& b) const override { return m.forward(b.inputs); }
  torch::Tensor loss(const torch::Tensor& logits, const TaskBatch& b) const override {
    return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), b.targets.reshape({-1}));
  }
  nlohmann::json final_figures(const Model& m) const override {
    const std::string src = s_.test_text.empty() ? s_.train_text : s_.test_text;
    LmEvalResult ev = evaluate_lm(m, token_windows(test_, opt_.seq_len, -1, src), 16);
    return {{"train_tokens", train_.numel()}, {"test_tokens", test_.numel()},
            {"test_windows", ev.windows}, {"seq_len", opt_.seq_len},
            {"test_predicted_tokens", ev.predicted}, {"test_perplexity", ev.perplexity}};
  }

 private:
  Spec s_;
  std::unique_ptr<Tokenizer> tok_, train_tok_;
  std::string model_folder_;
  int64_t seq_len_ = 0;
  torch::Tensor text_tokens_, windows_, calib_;
  torch::Tensor train_, test_, offs_;
  TrainOptions opt_;
};

}  // namespace

TaskInfo lm_perplexity_task_info() {
  TaskInfo t;
  t.name = "lm-perplexity";
  t.dataset = "text";
  t.fits = [](const ArchConfig& c) { return c.is_lm(); };
  t.train_data_key = "text";
  t.parse = [](const nlohmann::json& data, const nlohmann::json& calib, bool training,
               std::vector<std::string>& problems) {
    LmPerplexity::Spec s;
    FieldReader d(data, "/data", problems);
    d.string("dataset", "");
    d.string("task", "");
    s.path = d.string("path", "");
    s.tokenizer = d.string("tokenizer", "");
    s.train_text = d.string("text", "");
    s.test_text = d.string("test", "");
    s.split = d.number("split", 0.9, 0.01, 0.99);
    d.reject_unknown();
    if (training) {
      if (s.train_text.empty()) d.problem("text", "expected the training text file");
      if (!s.tokenizer.empty() && s.tokenizer != "char" && s.tokenizer != "byte")
        d.problem("tokenizer", concat("expected char or byte for a model pare trains, got \"", s.tokenizer, "\""));
      if (s.test_text.empty() && !s.path.empty()) s.test_text = s.path;
    } else if (s.path.empty()) {
      d.problem("path", "missing: a language model needs an evaluation text file; --data gives it too");
    }
    FieldReader c(calib, "/calibration", problems);
    s.calib_samples = c.integer("samples", 128, 1, 60000);
    s.calib_seed = static_cast<uint64_t>(c.integer("seed", 0, 0));
    s.calibration_path = c.string("path", "");
    s.calib_seq_len = c.integer("seq_len", 0, 0, 1 << 20);
    c.reject_unknown();
    return std::unique_ptr<Task>(new LmPerplexity(std::move(s)));
  };
  return t;
}

}  // namespace pare
