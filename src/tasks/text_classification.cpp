// Task text-classification: labelled sentences (data/text_data.h: GLUE-style TSV/CSV with sentence
// and label columns, or SST-2's stsa.binary.* "LABEL SENTENCE" lines), a bert model, accuracy and
// (binary tasks) F1 of label 1.
//
// Recipe: data: {dataset: sst2 (or task: text-classification), path: FOLDER (default
// ../shared/data/sst2, holding stsa.binary.train / .dev / .test), train / dev / test: FILE (each
// defaults to the folder's stsa.binary.*), eval_split: dev | test (measured; pare eval --split; default
// dev), vocab: vocab.txt (default: the model's own; pare train builds one from the training
// sentences when none is given), lowercase: true, labels: [names] (id2label when training),
// valid_fraction: 0.1, valid_seed: 0}; calibration: {samples: 256, seed: 0} (training sentences).
//
// Splits. SST-2's published train / dev / test (6920 / 872 / 1821 sentences in stsa.binary.*):
// training uses train minus a validation part carved from it (valid_fraction of train, a seeded
// permutation; the best epoch and every choice are made on it); dev and test are only reported.
//
// Sentences are tokenised by WordPiece (data/wordpiece.h) into [CLS] … [SEP]; one longer than the
// model's positions is cut to max_position_embeddings tokens (keeping [SEP]), and the report says
// how many were cut. Batches are padded to their longest sentence with [PAD]; the bert forward
// runs them padding-free (families/bert.h). FLOPs are counted per sentence at its own length
// (no padding) and averaged over the evaluated sentences.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
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

constexpr const char* kDefaultSst2 = "../shared/data/sst2";

class TextClassification : public Task {
 public:
  struct Spec {
    std::string path, train, dev, test, split = "dev", vocab;
    bool lowercase = true;
    std::vector<std::string> labels;
    double valid_fraction = 0.1;
    uint64_t valid_seed = 0;
    int64_t calib_samples = 256;
    uint64_t calib_seed = 0;
  };
  explicit TextClassification(Spec s) : s_(std::move(s)) {}

  std::string name() const override { return "text-classification"; }
  std::vector<MetricSpec> metrics() const override {
    return {{"accuracy", "accuracy %", "fraction", true, true, "points", {"max_drop", "min"}, false, 2},
            {"f1", "F1 %", "fraction", true, true, "points", {"max_drop", "min"}, false, 2}};
  }
  std::string flops_unit() const override { return "sentence"; }
  std::string flops_counted() const override {
    return "2 x MACs of matmuls per sentence at its own token count (no padding), averaged over the "
           "evaluated sentences: Q/K/V/O, FFN, attention QK^T and AV, pooler and classifier on "
           "[CLS]; embedding lookups, norms, softmax, GELU, bias/residual adds excluded";
  }
  std::string data_path() const override { return s_.path; }

  void load(const Model& m, const std::string& model_path, const EvalSettings& eval, bool,
            const std::function<void(const std::string&)>& log) override {
    PARE_CHECK(m.config.is_text_encoder(), s_.path, ": text-classification needs a bert model, got family ",
               m.config.family);
    // The model folder's tokenizer_config.json decides do_lower_case (data.lowercase without one).
    tok_ = std::make_shared<WordPiece>(
        WordPiece::load(vocab_for_model(model_path), tokenizer_lowercase(model_path, s_.lowercase)));
    check_vocab(*tok_, m.config);
    const std::string file = s_.split == "test" ? s_.test : s_.dev;
    eval_ = encode(read_labelled_sentences(file), m.config, file, eval.limit);
    check_labels(eval_, m.config, file);
    log(concat(eval_.ids.size(), " ", s_.split, " sentences from ", file, " (", eval_.truncated,
               " cut to ", m.config.max_position_embeddings, " tokens)"));
  }
  std::string describe_markdown() const override {
    return concat("- sentences: ", s_.split == "test" ? s_.test : s_.dev, " (", s_.split, " split, ",
                  eval_.ids.size(), " sentences, mean ", fmt_fixed(eval_.mean_length(), 1),
                  " tokens with [CLS]/[SEP]; ", eval_.truncated, " cut to the model's positions)\n",
                  "- training data: ", s_.train, " minus a validation part of ", s_.valid_fraction,
                  " (seed ", s_.valid_seed, ") on which choices are made; dev and test are only reported\n",
                  "- tokenizer: WordPiece, ", tok_ ? tok_->vocab_size() : 0, " tokens, ",
                  tok_ && !tok_->lowercase() ? "cased" : "uncased", "\n");
  }
  nlohmann::json describe() const override {
    return {{"name", name()},
            {"data", s_.path},
            {"splits",
             {{"evaluated", {{"split", s_.split}, {"file", s_.split == "test" ? s_.test : s_.dev},
                             {"size", eval_.ids.size()}, {"truncated", eval_.truncated},
                             {"mean_tokens", eval_.mean_length()}}},
              {"train", {{"file", s_.train}, {"used_for", "training (minus validation) and calibration"}}},
              {"validation", {{"carved_from", s_.train}, {"fraction", s_.valid_fraction}, {"seed", s_.valid_seed}}}}},
            {"tokenizer", {{"kind", "wordpiece"}, {"vocab_size", tok_ ? tok_->vocab_size() : 0},
                           {"lowercase", tok_ ? tok_->lowercase() : s_.lowercase}}},
            {"calibration", {{"samples", s_.calib_samples}, {"seed", s_.calib_seed}}}};
  }

  Measurement measure(const Model& m, const EvalSettings& eval, const Model*) const override {
    Measurement r;
    const auto t0 = std::chrono::steady_clock::now();
    const Scores sc = score(m, eval_, eval.batch_size);
    r.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.metrics["accuracy"] = sc.accuracy;
    r.metrics["f1"] = sc.f1;
    r.samples = static_cast<int64_t>(eval_.ids.size());
    r.samples_unit = "sentences";
    r.flops = mean_flops(m, eval_);
    r.throughput = r.samples / std::max(sc.forward_seconds, 1e-9);
    r.throughput_unit = "sentences/s";
    r.extra = {{"tokens_per_second", eval_.tokens() / std::max(sc.forward_seconds, 1e-9)},
               {"split", s_.split}};
    return r;
  }
  int64_t default_eval_batch_size() const override { return 128; }

  CalibrationSet calibration(const Model& m, const std::string&) const override {
    const auto train = read_labelled_sentences(s_.train);
    Encoded e = encode(train, m.config, s_.train, -1);
    torch::Generator gen = make_generator(s_.calib_seed);
    torch::Tensor perm = torch::randperm(static_cast<int64_t>(e.ids.size()), gen, torch::kLong);
    const int64_t n = std::min<int64_t>(s_.calib_samples, perm.numel());
    std::vector<int64_t> idx(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + n);
    CalibrationSet c;
    c.inputs = pad_batch(e.ids, idx, m.config.pad_token_id);
    return c;
  }

  // ---- training ----
  void prepare_training(nlohmann::json& model, const TrainOptions&, std::vector<std::string>& problems,
                        const std::function<void(const std::string&)>& log) override {
    const auto train = read_labelled_sentences(s_.train);
    if (!s_.vocab.empty()) {
      tok_ = std::make_shared<WordPiece>(WordPiece::load(s_.vocab, s_.lowercase));
    } else {
      if (!model.contains("vocab_size") || !model["vocab_size"].is_number_integer()) {
        problems.push_back("/model/vocab_size: needed to build a vocabulary (or give data.vocab)");
        return;
      }
      std::vector<std::string> texts;
      for (const auto& s : train) texts.push_back(s.text);
      tok_ = std::make_shared<WordPiece>(
          build_wordpiece_vocab(texts, model["vocab_size"].get<int64_t>(), s_.lowercase, 1, WordPieceMerge::kCount));
      log(concat("built a WordPiece vocabulary of ", tok_->vocab_size(), " tokens from ", s_.train));
    }
    if (model.contains("vocab_size") && model["vocab_size"] != tok_->vocab_size())
      problems.push_back(concat("/model/vocab_size: ", model["vocab_size"].dump(), " disagrees with the ",
                                tok_->vocab_size(), " tokens of the vocabulary"));
    model["vocab_size"] = tok_->vocab_size();
    model["pad_token_id"] = tok_->pad_id();
    int64_t labels = 0;
    for (const auto& s : train) labels = std::max(labels, s.label + 1);
    if (!s_.labels.empty()) {
      if (static_cast<int64_t>(s_.labels.size()) < labels)
        problems.push_back(concat("/data/labels: ", s_.labels.size(), " names for labels up to ", labels - 1,
                                  " in ", s_.train));
      labels = static_cast<int64_t>(s_.labels.size());
      nlohmann::json id2label = nlohmann::json::object();
      for (size_t i = 0; i < s_.labels.size(); ++i) id2label[std::to_string(i)] = s_.labels[i];
      model["id2label"] = id2label;
    }
    model["num_labels"] = labels;
    // Costs are counted at the training sentences' mean length (tokens with [CLS]/[SEP]).
    int64_t tokens = 0;
    for (const auto& s : train) tokens += static_cast<int64_t>(tok_->encode(s.text).size()) + 2;
    model["pare"]["context_length"] = std::max<int64_t>(
        1, std::llround(static_cast<double>(tokens) / static_cast<double>(train.size())));
    if (!model["pare"].contains("family")) model["pare"]["family"] = "bert";
  }
  void adopt(const Task& loaded) override {
    if (const auto* t = dynamic_cast<const TextClassification*>(&loaded)) tok_ = t->tok_;
  }
  void prepare_fine_tuning(const Model& m, const std::function<void(const std::string&)>&) override {
    PARE_CHECK(tok_, "text-classification: prepare_fine_tuning before load");
    check_vocab(*tok_, m.config);
  }
  std::vector<std::pair<std::string, std::string>> model_files() const override {
    if (!tok_) return {};
    return wordpiece_model_files(*tok_);
  }
  TrainPlan begin_training(const Model& m, const TrainOptions& o, torch::Generator&) override {
    PARE_CHECK(tok_, "text-classification: begin_training before prepare_training");
    check_vocab(*tok_, m.config);
    opt_ = o;
    auto train = read_labelled_sentences(s_.train);
    check_labels_of(train, m.config, s_.train);
    // The validation part: a seeded permutation of train, its first valid_fraction.
    torch::Generator vg = make_generator(s_.valid_seed);
    torch::Tensor perm = torch::randperm(static_cast<int64_t>(train.size()), vg, torch::kLong);
    const int64_t n_valid = std::llround(s_.valid_fraction * static_cast<double>(train.size()));
    std::vector<LabelledSentence> tr, va;
    for (int64_t i = 0; i < perm.numel(); ++i)
      (i < n_valid ? va : tr).push_back(train[perm[i].item<int64_t>()]);
    if (o.limit_train >= 0 && o.limit_train < static_cast<int64_t>(tr.size())) tr.resize(o.limit_train);
    train_ = encode(tr, m.config, s_.train, -1);
    valid_ = encode(va, m.config, s_.train, -1);
    dev_ = encode(read_labelled_sentences(s_.dev), m.config, s_.dev, -1);
    test_ = encode(read_labelled_sentences(s_.test), m.config, s_.test, -1);
    const int64_t steps = static_cast<int64_t>(train_.ids.size()) / o.batch_size;
    PARE_CHECK(steps > 0, "train: fewer training sentences (", train_.ids.size(), ") than batch_size (",
               o.batch_size, ")");
    return {o.epochs, steps, "sentences"};
  }
  void begin_epoch(int, torch::Generator& gen) override {
    perm_ = torch::randperm(static_cast<int64_t>(train_.ids.size()), gen, torch::kLong);
  }
  TaskBatch train_batch(int64_t s, torch::Generator&) override {
    const int64_t* p = perm_.data_ptr<int64_t>() + s * opt_.batch_size;
    std::vector<int64_t> idx(p, p + opt_.batch_size);
    TaskBatch b;
    b.inputs = pad_batch(train_.ids, idx, train_.pad);
    std::vector<int64_t> y;
    for (int64_t i : idx) y.push_back(train_.labels[i]);
    b.targets = torch::tensor(y, torch::kLong);
    b.size = b.units = opt_.batch_size;
    return b;
  }
  torch::Tensor forward(const Model& m, const TaskBatch& b) const override { return m.forward(b.inputs); }
  torch::Tensor loss(const torch::Tensor& logits, const TaskBatch& b) const override {
    return at::cross_entropy_loss(logits, b.targets, {}, at::Reduction::Mean, -100, opt_.label_smoothing);
  }
  std::optional<EpochEval> end_epoch(const Model& m, int epoch) const override {
    const Scores v = score(m, valid_, 256);
    EpochEval e;
    e.valid = v.accuracy;
    e.figures = {{"valid_accuracy", v.accuracy}, {"valid_f1", v.f1}};
    e.line = concat("epoch ", epoch, "/", opt_.epochs, " validation accuracy ", fmt_fixed(v.accuracy, 4), " (",
                    valid_.ids.size(), " sentences carved from train)");
    return e;
  }
  nlohmann::json final_figures(const Model& m) const override {
    const Scores v = score(m, valid_, 256), d = score(m, dev_, 256), t = score(m, test_, 256);
    return {{"valid_accuracy", v.accuracy}, {"dev_accuracy", d.accuracy}, {"dev_f1", d.f1},
            {"test_accuracy", t.accuracy}, {"test_f1", t.f1}, {"valid_sentences", valid_.ids.size()},
            {"dev_sentences", dev_.ids.size()}, {"test_sentences", test_.ids.size()},
            {"flops_per_sentence_dev", mean_flops(m, dev_)}};
  }

 private:
  struct Scores {
    double accuracy = 0, f1 = 0, forward_seconds = 0;
  };

  std::string vocab_for_model(const std::string& model_path) const {
    if (!s_.vocab.empty()) return s_.vocab;
    const std::string beside =
        std::filesystem::is_directory(model_path) ? model_path + "/vocab.txt" : std::string();
    PARE_CHECK(!beside.empty() && file_exists(beside), model_path, ": no vocab.txt beside the model; give ",
               how_to_set("vocab"));
    return beside;
  }
  Encoded encode(const std::vector<LabelledSentence>& sents, const ArchConfig& c, const std::string& file,
                 int64_t limit) const {
    return encode_sentences(*tok_, sents, c.max_position_embeddings, limit, file);
  }
  void check_vocab(const WordPiece& t, const ArchConfig& c) const {
    PARE_CHECK(t.vocab_size() == c.vocab_size && t.pad_id() == c.pad_token_id,
               s_.vocab.empty() ? std::string("the model's vocab.txt") : s_.vocab, ": ", t.vocab_size(),
               " tokens with [PAD] = ", t.pad_id(), ", but the model has vocab_size ", c.vocab_size,
               " and pad_token_id ", c.pad_token_id);
  }
  static void check_labels(const Encoded& e, const ArchConfig& c, const std::string& file) {
    for (size_t i = 0; i < e.labels.size(); ++i)
      PARE_CHECK(e.labels[i] < c.num_labels, file, ":", e.lines[i], ": label ", e.labels[i],
                 " but the model has ", c.num_labels, " labels");
  }
  static void check_labels_of(const std::vector<LabelledSentence>& s, const ArchConfig& c, const std::string& file) {
    for (const auto& x : s)
      PARE_CHECK(x.label < c.num_labels, file, ":", x.line, ": label ", x.label, " but the model has ",
                 c.num_labels, " labels");
  }
  static Scores score(const Model& m, const Encoded& e, int64_t batch) {
    torch::NoGradGuard ng;
    Scores s;
    int64_t correct = 0, tp = 0, fp = 0, fn = 0;
    const int64_t n = static_cast<int64_t>(e.ids.size());
    for (int64_t i = 0; i < n; i += batch) {
      std::vector<int64_t> idx;
      for (int64_t j = i; j < std::min(n, i + batch); ++j) idx.push_back(j);
      torch::Tensor ids = pad_batch(e.ids, idx, e.pad);
      const auto t0 = std::chrono::steady_clock::now();
      const torch::Tensor pred = m.forward(ids).argmax(1).to(torch::kLong).cpu().contiguous();
      s.forward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int64_t* pp = pred.data_ptr<int64_t>();
      for (size_t k = 0; k < idx.size(); ++k) {
        const int64_t p = pp[k], y = e.labels[idx[k]];
        correct += p == y;
        tp += p == 1 && y == 1;
        fp += p == 1 && y != 1;
        fn += p != 1 && y == 1;
      }
    }
    s.accuracy = n ? static_cast<double>(correct) / static_cast<double>(n) : 0;
    s.f1 = tp ? 2.0 * tp / static_cast<double>(2 * tp + fp + fn) : 0;
    return s;
  }
  // FLOPs of each sentence at its own length (costs() counts one sequence of context_length
  // tokens), averaged.
  static double mean_flops(const Model& m, const Encoded& e) {
    std::map<int64_t, int64_t> count;
    for (const auto& x : e.ids) ++count[static_cast<int64_t>(x.size())];
    Model shallow = m;  // shares the weights; only the length changes
    double total = 0;
    for (const auto& [len, k] : count) {
      shallow.config.context_length = len;
      int64_t f = 0;
      for (const auto& r : shallow.family().costs(shallow)) f += r.flops;
      total += static_cast<double>(f) * static_cast<double>(k);
    }
    return e.ids.empty() ? 0 : total / static_cast<double>(e.ids.size());
  }

  Spec s_;
  std::shared_ptr<WordPiece> tok_;
  Encoded eval_, train_, valid_, dev_, test_;
  TrainOptions opt_;
  torch::Tensor perm_;
};

}  // namespace

TaskInfo text_classification_task_info() {
  TaskInfo t;
  t.name = "text-classification";
  t.dataset = "sst2";
  t.fits = [](const ArchConfig& c) { return c.is_text_encoder(); };
  t.parse = [](const nlohmann::json& data, const nlohmann::json& calib, bool,
               std::vector<std::string>& problems) {
    FieldReader d(data, "/data", problems);
    d.string("dataset", "");
    d.string("task", "");
    TextClassification::Spec s;
    s.path = d.string("path", kDefaultSst2);
    s.train = d.string("train", s.path + "/stsa.binary.train");
    s.dev = d.string("dev", s.path + "/stsa.binary.dev");
    s.test = d.string("test", s.path + "/stsa.binary.test");
    s.split = d.string("eval_split", "dev", {"dev", "test"});
    s.vocab = d.string("vocab", "");
    s.lowercase = d.boolean("lowercase", true);
    s.valid_fraction = d.number("valid_fraction", 0.1, 0.0, 0.5);
    s.valid_seed = static_cast<uint64_t>(d.integer("valid_seed", 0, 0));
    s.labels = read_string_list(data, "labels", d, "label names");
    d.reject_unknown();
    FieldReader c(calib, "/calibration", problems);
    s.calib_samples = c.integer("samples", 256, 1);
    s.calib_seed = static_cast<uint64_t>(c.integer("seed", 0, 0));
    c.reject_unknown();
    return std::unique_ptr<Task>(new TextClassification(std::move(s)));
  };
  return t;
}

}  // namespace pare
