// Task masked-lm: masked-language-model pre-training of a bert (Devlin et al., NAACL 2019, §3.1
// "Task #1: Masked LM") on plain text files, before it is fine-tuned on a small labelled set
// (text-classification).
//
// Recipe: data: {dataset: mlm-text (or task: masked-lm), files: [TEXT FILES], labelled_files:
// [SENTENCE FILES] (data/text_data.h formats: their sentences without the labels), vocab: vocab.txt
// (default for pare train: built from the files by build_wordpiece_vocab with model.vocab_size;
// for evaluation: the model's own), lowercase: true, seq_len: 64, mask_rate: 0.15,
// valid_fraction: 0.02}. The model section gets mlm_head true (HF BertForMaskedLM's head; the
// classifier and pooler stay, untrained, for the fine-tuning stage).
//
// Data: every non-empty line of every file, in order, tokenised by WordPiece and concatenated
// into one stream, cut into windows of seq_len − 2 tokens, each [CLS] window [SEP] (RoBERTa's
// "full-sentences" packing, Liu et al. 2019, §4.2, without next-sentence prediction). The last
// valid_fraction of the windows is held out. Masking per batch, from the loop's generator: each
// token other than [CLS]/[SEP] is chosen with probability mask_rate; a chosen token becomes
// [MASK] (80%), a random token (10%; a drawn special token leaves it as it is) or stays (10%); the loss is the cross-entropy of
// the chosen tokens only. Held-out windows use one fixed masking (seed 0), so epochs compare.
// Metric: accuracy of the masked-token predictions (mlm_accuracy) on the held-out windows.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>

#include "base/error.h"
#include "base/fileio.h"
#include "base/recipe.h"
#include "data/text_data.h"
#include "data/wordpiece.h"
#include "families/bert.h"
#include "families/family.h"
#include "tasks/task.h"
#include "tasks/text_batches.h"

namespace pare {
namespace {

class MaskedLm : public Task {
 public:
  struct Spec {
    std::vector<std::string> files, labelled_files;
    std::string vocab;
    bool lowercase = true;
    int64_t seq_len = 64;
    double mask_rate = 0.15, valid_fraction = 0.02;
  };
  explicit MaskedLm(Spec s) : s_(std::move(s)) {}

  std::string name() const override { return "masked-lm"; }
  std::vector<MetricSpec> metrics() const override {
    return {{"mlm_accuracy", "masked-token accuracy %", "fraction", true, true, "points", {"max_drop", "min"}, false, 2},
            {"mlm_loss", "masked-token loss (nats)", "nats/token", false, false, "absolute", {"max"}, false, 4}};
  }
  std::string flops_unit() const override { return "sequence"; }
  std::string flops_counted() const override {
    return "2 x MACs of matmuls of one context_length sequence (the encoder and pooler; the MLM head "
           "is not counted)";
  }
  std::string data_path() const override { return s_.files.empty() ? "" : s_.files[0]; }

  void load(const Model& m, const std::string& model_path, const EvalSettings&, bool,
            const std::function<void(const std::string&)>& log) override {
    PARE_CHECK(m.config.is_text_encoder() && m.config.mlm_head, data_path(),
               ": masked-lm needs a bert model with its MLM head (pare.mlm_head)");
    const std::string vocab = !s_.vocab.empty() ? s_.vocab : model_path + "/vocab.txt";
    PARE_CHECK(file_exists(vocab), model_path, ": no vocab.txt beside the model; give data.vocab");
    tok_ = std::make_shared<WordPiece>(WordPiece::load(vocab, tokenizer_lowercase(model_path, s_.lowercase)));
    make_windows(m.config);
    log(concat(valid_.size(), " held-out windows of ", s_.seq_len, " tokens"));
  }
  std::string describe_markdown() const override {
    return concat("- text: ", files_list(), " (", stream_tokens_, " WordPiece tokens, ", train_.size(), " + ",
                  valid_.size(), " held-out windows of ", s_.seq_len, " tokens; mask rate ", s_.mask_rate, ")\n");
  }
  nlohmann::json describe() const override {
    return {{"name", name()}, {"files", s_.files}, {"tokens", stream_tokens_}, {"seq_len", s_.seq_len},
            {"windows", {{"train", train_.size()}, {"held_out", valid_.size()}}}, {"mask_rate", s_.mask_rate}};
  }
  Measurement measure(const Model& m, const EvalSettings& eval, const Model*) const override {
    const auto t0 = std::chrono::steady_clock::now();
    const auto [acc, loss, n] = score(m, valid_, eval.batch_size);
    Measurement r;
    r.metrics["mlm_accuracy"] = acc;
    r.metrics["mlm_loss"] = loss;
    r.samples = n;
    r.samples_unit = "masked tokens";
    r.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t f = 0;
    for (const auto& c : m.family().costs(m)) f += c.flops;
    r.flops = static_cast<double>(f);
    return r;
  }
  CalibrationSet calibration(const Model&, const std::string& pass) const override {
    throw InputError(concat(pass, ": the masked-lm task offers no calibration data (use text-classification)"));
  }

  void prepare_training(nlohmann::json& model, const TrainOptions&, std::vector<std::string>& problems,
                        const std::function<void(const std::string&)>& log) override {
    if (s_.files.empty() && s_.labelled_files.empty()) {
      problems.push_back("/data/files: expected a list of text files");
      return;
    }
    if (!s_.vocab.empty()) {
      tok_ = std::make_shared<WordPiece>(WordPiece::load(s_.vocab, s_.lowercase));
    } else {
      if (!model.contains("vocab_size") || !model["vocab_size"].is_number_integer()) {
        problems.push_back("/model/vocab_size: needed to build a vocabulary (or give data.vocab)");
        return;
      }
      const std::vector<std::string> lines = all_lines();
      tok_ = std::make_shared<WordPiece>(build_wordpiece_vocab(lines, model["vocab_size"].get<int64_t>(), s_.lowercase, 1, WordPieceMerge::kCount));
      log(concat("built a WordPiece vocabulary of ", tok_->vocab_size(), " tokens from ", lines.size(), " lines"));
    }
    model["vocab_size"] = tok_->vocab_size();
    model["pad_token_id"] = tok_->pad_id();
    if (!model.contains("num_labels") && !model.contains("id2label")) model["num_labels"] = 2;
    model["pare"]["mlm_head"] = true;
    model["pare"]["context_length"] = s_.seq_len;
    if (!model.contains("max_position_embeddings")) model["max_position_embeddings"] = std::max<int64_t>(128, s_.seq_len);
  }
  std::vector<std::pair<std::string, std::string>> model_files() const override {
    if (!tok_) return {};
    return wordpiece_model_files(*tok_);
  }
  TrainPlan begin_training(const Model& m, const TrainOptions& o, torch::Generator&) override {
    PARE_CHECK(m.config.mlm_head, "masked-lm: the model has no MLM head");
    PARE_CHECK(s_.seq_len <= m.config.max_position_embeddings, "/data/seq_len: ", s_.seq_len,
               " exceeds max_position_embeddings ", m.config.max_position_embeddings);
    opt_ = o;
    make_windows(m.config);
    if (o.limit_train >= 0 && o.limit_train < static_cast<int64_t>(train_.size())) train_.resize(o.limit_train);
    const int64_t steps = static_cast<int64_t>(train_.size()) / o.batch_size;
    PARE_CHECK(steps > 0, "train: fewer windows (", train_.size(), ") than batch_size (", o.batch_size, ")");
    return {o.epochs, steps, "windows"};
  }
  void begin_epoch(int, torch::Generator& gen) override {
    perm_ = torch::randperm(static_cast<int64_t>(train_.size()), gen, torch::kLong);
  }
  TaskBatch train_batch(int64_t s, torch::Generator& gen) override {
    const int64_t* p = perm_.data_ptr<int64_t>() + s * opt_.batch_size;
    std::vector<int64_t> idx(p, p + opt_.batch_size);
    TaskBatch b = masked_batch(train_, idx, gen);
    b.size = opt_.batch_size;
    b.units = b.inputs.numel();
    return b;
  }
  torch::Tensor forward(const Model& m, const TaskBatch& b) const override {
    torch::Tensor h = bert_sequence_output(m, b.inputs);
    return bert_mlm_logits(m, h.index({b.targets.ne(-100)}));
  }
  torch::Tensor loss(const torch::Tensor& logits, const TaskBatch& b) const override {
    return at::cross_entropy_loss(logits, b.targets.masked_select(b.targets.ne(-100)));
  }
  std::optional<EpochEval> end_epoch(const Model& m, int epoch) const override {
    const auto [acc, loss, n] = score(m, valid_, 256);
    EpochEval e;
    e.valid = acc;
    e.figures = {{"valid_mlm_accuracy", acc}, {"valid_mlm_loss", loss}, {"valid_masked_tokens", n}};
    e.line = concat("epoch ", epoch, "/", opt_.epochs, " held-out masked-token accuracy ", fmt_fixed(acc, 4),
                    " loss ", fmt_fixed(loss, 4), " (", n, " tokens)");
    return e;
  }
  nlohmann::json final_figures(const Model& m) const override {
    const auto [acc, loss, n] = score(m, valid_, 256);
    return {{"valid_mlm_accuracy", acc}, {"valid_mlm_loss", loss}, {"valid_masked_tokens", n},
            {"train_windows", train_.size()}, {"tokens", stream_tokens_}};
  }

 private:
  // Every text line: the files' lines, then the sentences (labels dropped) of the labelled files.
  std::vector<std::string> all_lines() const {
    std::vector<std::string> lines;
    for (const auto& f : s_.files)
      for (auto& l : read_text_lines(f)) lines.push_back(std::move(l));
    for (const auto& f : s_.labelled_files)
      for (auto& x : read_labelled_sentences(f)) lines.push_back(std::move(x.text));
    return lines;
  }
  std::string files_list() const {
    std::string s;
    for (const auto& f : s_.files) s += (s.empty() ? "" : ", ") + f;
    for (const auto& f : s_.labelled_files) s += (s.empty() ? "" : ", ") + f + " (sentences only)";
    return s;
  }
  void make_windows(const ArchConfig& c) {
    PARE_CHECK(tok_->vocab_size() == c.vocab_size, "vocab.txt: ", tok_->vocab_size(), " tokens, but the model has ",
               c.vocab_size);
    std::vector<int64_t> stream;
    for (const auto& l : all_lines()) {
      auto ids = tok_->encode(l);
      stream.insert(stream.end(), ids.begin(), ids.end());
    }
    stream_tokens_ = static_cast<int64_t>(stream.size());
    const int64_t w = s_.seq_len - 2;
    std::vector<std::vector<int64_t>> all;
    for (int64_t i = 0; i + w <= static_cast<int64_t>(stream.size()); i += w) {
      std::vector<int64_t> x{tok_->cls_id()};
      x.insert(x.end(), stream.begin() + i, stream.begin() + i + w);
      x.push_back(tok_->sep_id());
      all.push_back(std::move(x));
    }
    PARE_CHECK(all.size() >= 2, files_list(), ": too little text for windows of ", s_.seq_len, " tokens");
    const size_t n_valid = std::max<size_t>(1, static_cast<size_t>(std::llround(s_.valid_fraction * all.size())));
    valid_.assign(all.end() - static_cast<std::ptrdiff_t>(n_valid), all.end());
    train_.assign(all.begin(), all.end() - static_cast<std::ptrdiff_t>(n_valid));
  }
  TaskBatch masked_batch(const std::vector<std::vector<int64_t>>& wins, const std::vector<int64_t>& idx,
                         torch::Generator& gen) const {
    torch::Tensor ids = pad_batch(wins, idx, tok_->pad_id());
    torch::Tensor special = ids.eq(tok_->cls_id()) | ids.eq(tok_->sep_id()) | ids.eq(tok_->pad_id());
    torch::Tensor chosen = (torch::rand(ids.sizes(), gen) < s_.mask_rate) & special.logical_not();
    if (!chosen.any().item<bool>()) chosen[0][1] = true;
    torch::Tensor r = torch::rand(ids.sizes(), gen);
    // A random token, never a special one (a drawn special leaves the token as it is): a
    // Hugging Face vocab.txt keeps its specials anywhere (bert-base-uncased: 0 and 100-103).
    torch::Tensor random_ids = torch::randint(0, tok_->vocab_size(), ids.sizes(), gen, torch::kLong);
    for (int64_t sp : {tok_->pad_id(), tok_->unk_id(), tok_->cls_id(), tok_->sep_id(), tok_->mask_id()})
      random_ids = torch::where(random_ids.eq(sp), ids, random_ids);
    TaskBatch b;
    b.targets = torch::where(chosen, ids, torch::full_like(ids, -100));
    torch::Tensor x = torch::where(chosen & (r < 0.8), torch::full_like(ids, tok_->mask_id()), ids);
    b.inputs = torch::where(chosen & (r >= 0.8) & (r < 0.9), random_ids, x);
    return b;
  }
  std::tuple<double, double, int64_t> score(const Model& m, const std::vector<std::vector<int64_t>>& wins,
                                            int64_t batch) const {
    torch::NoGradGuard ng;
    torch::Generator gen = make_generator(0);
    int64_t correct = 0, n = 0;
    double loss = 0;
    for (size_t i = 0; i < wins.size(); i += batch) {
      std::vector<int64_t> idx;
      for (size_t j = i; j < std::min(wins.size(), i + batch); ++j) idx.push_back(static_cast<int64_t>(j));
      TaskBatch b = masked_batch(wins, idx, gen);
      torch::Tensor logits = forward(m, b);
      torch::Tensor y = b.targets.masked_select(b.targets.ne(-100));
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      loss += at::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
      n += y.numel();
    }
    return {n ? static_cast<double>(correct) / static_cast<double>(n) : 0, n ? loss / static_cast<double>(n) : 0, n};
  }

  Spec s_;
  std::shared_ptr<WordPiece> tok_;
  std::vector<std::vector<int64_t>> train_, valid_;
  int64_t stream_tokens_ = 0;
  TrainOptions opt_;
  torch::Tensor perm_;
};

}  // namespace

TaskInfo masked_lm_task_info() {
  TaskInfo t;
  t.name = "masked-lm";
  t.dataset = "mlm-text";
  t.fits = [](const ArchConfig& c) { return c.is_text_encoder(); };
  t.train_data_key = "files";
  t.parse = [](const nlohmann::json& data, const nlohmann::json& calib, bool, std::vector<std::string>& problems) {
    FieldReader d(data, "/data", problems);
    d.string("dataset", "");
    d.string("task", "");
    MaskedLm::Spec s;
    s.files = read_string_list(data, "files", d, "text files");
    s.labelled_files = read_string_list(data, "labelled_files", d, "sentence files");
    s.vocab = d.string("vocab", "");
    s.lowercase = d.boolean("lowercase", true);
    s.seq_len = d.integer("seq_len", 64, 4, 4096);
    s.mask_rate = d.number("mask_rate", 0.15, 0.01, 0.9);
    s.valid_fraction = d.number("valid_fraction", 0.02, 0.0, 0.5);
    d.reject_unknown();
    FieldReader c(calib, "/calibration", problems);
    c.reject_unknown();
    return std::unique_ptr<Task>(new MaskedLm(std::move(s)));
  };
  return t;
}

}  // namespace pare
