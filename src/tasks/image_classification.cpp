// Task image-classification: Fashion-MNIST (or MNIST) idx files, top-1 accuracy, latency at batch
// sizes on random inputs. Recipe: data: {dataset: fashion-mnist, path: FOLDER}, calibration:
// {samples: 1024, seed: 0} (images drawn without replacement from the train split).
// Training (the one loop, train/trainer.h): epochs over a seeded permutation of the first
// limit_train train images, full batches only, optional random flip / translation, cross-entropy
// with label smoothing. data.valid_images N > 0 carves a validation split from train (N images of a
// permutation seeded with data.valid_seed; training uses the rest, in their order): after each
// epoch its accuracy picks the best epoch, and test is not looked at until the end. Without it the
// test accuracy is shown after each epoch and the last epoch's weights are kept (no choice reads
// test). The shipped ViT was trained on all of train, so for it a carved split is held out from
// fine-tuning only, not from its original training (results say so where they use it).
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "base/error.h"
#include "base/recipe.h"
#include "data/images.h"
#include "families/family.h"
#include "tasks/evaluate.h"
#include "tasks/task.h"

namespace pare {
namespace {

torch::Tensor augment(const torch::Tensor& u8, const TrainOptions& opt, torch::Generator& gen) {
  torch::Tensor x = u8;
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  if (opt.hflip) {
    torch::Tensor flip = torch::rand({B}, gen) < 0.5;
    x = torch::where(flip.view({B, 1, 1, 1}), x.flip({3}), x);
  }
  if (opt.translate > 0) {
    const int64_t t = opt.translate;
    torch::Tensor padded = torch::constant_pad_nd(x, {t, t, t, t}, 0);
    torch::Tensor off = torch::randint(0, 2 * t + 1, {B, 2}, gen, torch::kLong);
    auto acc = off.accessor<int64_t, 2>();
    std::vector<torch::Tensor> rows;
    rows.reserve(B);
    for (int64_t i = 0; i < B; ++i)
      rows.push_back(padded[i].narrow(1, acc[i][0], H).narrow(2, acc[i][1], W));
    x = torch::stack(rows);
  }
  return x;
}

class ImageClassification : public Task {
 public:
  ImageClassification(std::string dir, int64_t samples, uint64_t seed, int64_t valid_images, uint64_t valid_seed)
      : dir_(std::move(dir)), calib_samples_(samples), calib_seed_(seed), valid_images_(valid_images),
        valid_seed_(valid_seed) {}

  std::string name() const override { return "image-classification"; }
  std::vector<MetricSpec> metrics() const override {
    return {{"accuracy", "accuracy %", "fraction", true, true, "points", {"max_drop", "min"}, false, 2}};
  }
  std::string flops_unit() const override { return "image"; }
  std::string flops_counted() const override {
    return "2 x MACs of matmuls per image: patch projection, Q/K/V/O, MLP, shortcut matrices, "
           "attention QK^T and AV, classifier on CLS, each at the tokens it runs on, plus token "
           "selection (PageRank, Key similarity) under token pruning; norms, softmax, GELU, "
           "bias/residual adds excluded";
  }
  std::string data_path() const override { return dir_; }

  void load(const Model& m, const std::string&, const EvalSettings&, bool calibrate,
            const std::function<void(const std::string&)>&) override {
    if (calibrate) require_fashion_mnist(dir_, "train");  // calibration images
    test_ = load_fashion_mnist(dir_, "test");
    check_images_fit_model(test_, m.config, dir_);
  }
  std::string describe_markdown() const override {
    return concat("- images: ", dir_, " (test split, ", test_.size(), " images)\n",
                  "- calibration (passes that need it): ", calib_samples_, " train images, seed ",
                  calib_seed_, "\n",
                  valid_images_ > 0 ? concat("- validation (training and fine-tuning choose the best epoch on it): ",
                                             valid_images_, " train images carved off, seed ", valid_seed_, "\n")
                                    : std::string());
  }
  nlohmann::json describe() const override {
    nlohmann::json splits = {{"test", {{"split", "t10k"}, {"size", test_.size()}}},
                             {"train", {{"split", "train"}, {"used_for", "training and calibration"}}}};
    if (valid_images_ > 0)
      splits["valid"] = {{"carved_from", "train"}, {"size", valid_images_}, {"seed", valid_seed_},
                         {"used_for", "choosing the best fine-tuning epoch"}};
    return {{"name", name()},
            {"data", dir_},
            {"splits", splits},
            {"calibration", {{"samples", calib_samples_}, {"seed", calib_seed_},
                             {"drawn", "without replacement from the train split"}}}};
  }

  Measurement measure(const Model& m, const EvalSettings& eval, const Model*) const override {
    Measurement r;
    AccuracyResult acc = evaluate_accuracy(m, test_, eval.batch_size, eval.limit);
    r.metrics["accuracy"] = acc.accuracy;
    r.samples = acc.total;
    r.samples_unit = "images";
    r.eval_seconds = acc.seconds;
    r.flops = static_cast<double>(model_flops(m));
    for (int64_t b : eval.latency_batches)
      r.latency_ms.emplace_back(b, measure_latency(m, b, 3, static_cast<int>(eval.latency_reps)).median_ms);
    return r;
  }
  bool has_latency() const override { return true; }

  CalibrationSet calibration(const Model& m, const std::string&) const override {
    CalibrationSet s;
    s.inputs = draw_calibration_images(dir_, calib_samples_, calib_seed_, m.config.image_mean,
                                       m.config.image_std);
    return s;
  }

  void prepare_training(nlohmann::json&, const TrainOptions&, std::vector<std::string>&,
                        const std::function<void(const std::string&)>&) override {
    load_training_data();
  }
  void prepare_fine_tuning(const Model&, const std::function<void(const std::string&)>&) override {
    load_training_data();
  }
  TrainPlan begin_training(const Model& m, const TrainOptions& o, torch::Generator&) override {
    PARE_ASSERT(train_.images.defined(), "image-classification: begin_training before prepare_training");
    check_images_fit_model(test_, m.config, dir_);
    opt_ = o;
    mean_ = m.config.image_mean;
    std_ = m.config.image_std;
    n_ = o.limit_train < 0 ? train_.size() : std::min(o.limit_train, train_.size());
    const int64_t steps = n_ / o.batch_size;
    PARE_CHECK(steps > 0, "train: fewer training images (", n_, ") than batch_size (", o.batch_size, ")");
    return {o.epochs, steps, "img"};
  }
  void begin_epoch(int, torch::Generator& gen) override { perm_ = torch::randperm(n_, gen, torch::kLong); }
  TaskBatch train_batch(int64_t s, torch::Generator& gen) override {
    torch::Tensor idx = perm_.narrow(0, s * opt_.batch_size, opt_.batch_size);
    torch::Tensor u8 = augment(train_.images.index_select(0, idx), opt_, gen);
    TaskBatch b;
    b.inputs = normalize_images(u8, mean_, std_);
    b.targets = train_.labels.index_select(0, idx);
    b.size = b.units = opt_.batch_size;
    return b;
  }
  torch::Tensor forward(const Model& m, const TaskBatch& b) const override { return m.forward(b.inputs); }
  torch::Tensor loss(const torch::Tensor& logits, const TaskBatch& b) const override {
    return at::cross_entropy_loss(logits, b.targets, {}, at::Reduction::Mean, -100, opt_.label_smoothing);
  }
  std::optional<EpochEval> end_epoch(const Model& m, int epoch) const override {
    EpochEval e;
    if (valid_.images.defined()) {
      const AccuracyResult v = evaluate_accuracy(m, valid_, 500);
      e.valid = v.accuracy;
      e.figures = {{"valid_accuracy", v.accuracy}};
      e.line = concat("epoch ", epoch, "/", opt_.epochs, " validation accuracy ", v.accuracy, " (", v.total,
                      " images carved from train)");
      return e;
    }
    AccuracyResult acc = evaluate_accuracy(m, test_, 500);
    e.figures = {{"test_accuracy", acc.accuracy}};
    char line[160];
    std::snprintf(line, sizeof line, "epoch %d/%d test accuracy %.4f (%lld images)", epoch, opt_.epochs,
                  acc.accuracy, (long long)acc.total);
    e.line = line;
    return e;
  }
  nlohmann::json final_figures(const Model& m) const override {
    AccuracyResult acc = evaluate_accuracy(m, test_, 500);
    nlohmann::json j = {{"test_accuracy", acc.accuracy}, {"test_correct", acc.correct}, {"test_images", acc.total},
                        {"flops_per_image", model_flops(m)}};
    if (valid_.images.defined()) {
      const AccuracyResult v = evaluate_accuracy(m, valid_, 500);
      j["valid_accuracy"] = v.accuracy;
      j["valid_images"] = v.total;
      j["valid_seed"] = valid_seed_;
    }
    return j;
  }

 private:
  // train_ (without the validation images when valid_images_ > 0), valid_, test_.
  void load_training_data() {
    train_ = load_fashion_mnist(dir_, "train");
    test_ = load_fashion_mnist(dir_, "test");
    if (valid_images_ <= 0) return;
    PARE_CHECK(valid_images_ < train_.size(), dir_, ": data.valid_images ", valid_images_, " leaves no training image (",
               train_.size(), " in train)");
    torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(valid_seed_);
    const torch::Tensor perm = torch::randperm(train_.size(), g, torch::kLong);
    const torch::Tensor v = std::get<0>(perm.narrow(0, 0, valid_images_).sort());
    const torch::Tensor t = std::get<0>(perm.narrow(0, valid_images_, train_.size() - valid_images_).sort());
    valid_ = {train_.images.index_select(0, v), train_.labels.index_select(0, v)};
    train_ = {train_.images.index_select(0, t), train_.labels.index_select(0, t)};
  }

  std::string dir_;
  int64_t calib_samples_;
  uint64_t calib_seed_;
  int64_t valid_images_ = 0;
  uint64_t valid_seed_ = 0;
  ImageDataset test_, train_, valid_;
  TrainOptions opt_;
  std::vector<double> mean_, std_;
  int64_t n_ = 0;
  torch::Tensor perm_;
};

}  // namespace

TaskInfo image_classification_task_info() {
  TaskInfo t;
  t.name = "image-classification";
  t.dataset = "fashion-mnist";
  t.fits = [](const ArchConfig& c) { return c.family == "vit"; };
  t.parse = [](const nlohmann::json& data, const nlohmann::json& calib, bool,
               std::vector<std::string>& problems) {
    FieldReader d(data, "/data", problems);
    d.string("dataset", "");
    d.string("task", "");
    const std::string dir = d.string("path", kDefaultFashionMnistDir);
    const int64_t valid_images = d.integer("valid_images", 0, 0, 59999);
    const auto valid_seed = static_cast<uint64_t>(d.integer("valid_seed", 0, 0));
    d.reject_unknown();
    FieldReader c(calib, "/calibration", problems);
    const int64_t samples = c.integer("samples", 1024, 1, 60000);
    const auto seed = static_cast<uint64_t>(c.integer("seed", 0, 0));
    c.reject_unknown();
    return std::unique_ptr<Task>(new ImageClassification(dir, samples, seed, valid_images, valid_seed));
  };
  return t;
}

}  // namespace pare
