// pare train --recipe R [--out DIR] [--data DIR] [--set k=v]: trains a model from a recipe's
// `model:` and `train:` sections and saves it (config.json + model.safetensors + train.json).
#include <ATen/Parallel.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "checkpoint.h"
#include "commands.h"
#include "config.h"
#include "evaluate.h"
#include "family.h"
#include "fileio.h"
#include "images.h"
#include "recipe.h"
#include "lm_data.h"
#include "lm_eval.h"
#include "tokenizer.h"
#include "trainer.h"

namespace pare::cli {

namespace {

// pare train for decoder LMs. data: {text: FILE, test: FILE (optional), split: 0.9,
// tokenizer: char | byte}. Without `test`, the first `split` of the text's tokens train and the
// rest is the test text; with `test`, all of `text` trains. Writes the model, its tokenizer.json
// and train.json (test perplexity on non-overlapping seq_len windows).
int train_lm_command(const nlohmann::json& r, const std::string& recipe, const ArchConfig& cfg,
                     TrainOptions o, const std::string& out, std::vector<std::string>& problems) {
  std::string text_path, test_path, kind;
  double split = 0.9;
  {
    FieldReader d(r.value("data", nlohmann::json::object()), "/data", problems);
    d.string("dataset", "text", {"text"});
    text_path = d.string("text", "");
    test_path = d.string("test", "");
    split = d.number("split", 0.9, 0.01, 0.99);
    kind = d.string("tokenizer", "char", {"char", "byte"});
    d.reject_unknown();
    if (text_path.empty()) d.problem("text", "expected the training text file");
  }
  if (o.steps <= 0) problems.push_back("/train/steps: expected a positive number of steps");
  if (!problems.empty()) throw RecipeError(recipe, problems);
  PARE_CHECK(!out.empty(), recipe, ": /train/out: no output folder (set it or pass --out)");
  const std::string text = read_file(text_path);
  PARE_CHECK(!text.empty(), text_path, ": the text file is empty");
  std::unique_ptr<Tokenizer> tok = kind == "byte" ? make_byte_tokenizer() : build_char_tokenizer(text);
  PARE_CHECK(tok->vocab_size() <= cfg.vocab_size, recipe, ": /model/vocab_size ", cfg.vocab_size,
             " is smaller than the ", kind, " tokenizer's ", tok->vocab_size(), " tokens");
  std::vector<int64_t> ids = tok->encode(text);
  torch::Tensor all = torch::tensor(ids, torch::kLong), train, test;
  if (test_path.empty()) {
    const int64_t n = static_cast<int64_t>(split * static_cast<double>(all.numel()));
    train = all.narrow(0, 0, n);
    test = all.narrow(0, n, all.numel() - n);
  } else {
    train = all;
    test = tokenize_file(*tok, test_path);  // no BOS: these tokenizers have none
  }
  Model m = family_by_name(cfg.family).init(cfg, o.seed);
  std::cerr << "train: " << cfg.family << " with " << m.num_params() << " params, "
            << tok->vocab_size() << "-token " << kind << " tokenizer, " << train.numel()
            << " training tokens, " << at::get_num_threads() << " threads\n";
  TrainResult res = train_lm(m, train, test, o);
  LmEvalResult ev = evaluate_lm(m, token_windows(test, o.seq_len, -1, test_path.empty() ? text_path : test_path), 16);
  m.config.history.push_back({{"step", "train"}, {"recipe", recipe}, {"steps", o.steps},
                              {"seed", o.seed}, {"seconds", res.seconds},
                              {"threads", at::get_num_threads()},
                              {"test_perplexity", ev.perplexity}});
  StagedDir dir(out);
  save_model(m, dir.staging());
  if (kind == "char")
    save_char_tokenizer(*tok, dir.file("tokenizer.json"));
  else
    write_file_atomic(dir.file("tokenizer.json"), "{\"kind\": \"byte\"}\n");
  nlohmann::json log = {{"recipe", r}, {"seconds", res.seconds}, {"threads", at::get_num_threads()},
                        {"steps", res.steps}, {"final_loss", res.final_loss},
                        {"train_tokens", train.numel()}, {"test_tokens", test.numel()},
                        {"test_windows", ev.windows}, {"seq_len", o.seq_len},
                        {"test_perplexity", ev.perplexity}, {"params", m.num_params()}};
  write_file_atomic(dir.file("train.json"), log.dump(2) + "\n");
  dir.commit();
  std::cout << "trained " << out << ": test perplexity " << ev.perplexity << " (" << ev.predicted
            << " predicted tokens, windows of " << o.seq_len << "), " << res.seconds << " s on "
            << at::get_num_threads() << " threads\n";
  return 0;
}

}  // namespace

Runner add_train(CLI::App& app, Common& common) {
  struct Args {
    std::string recipe, out, data;
    std::vector<std::string> sets;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("train", "Train a model from a recipe (model: + train: sections)");
  sub->add_option("--recipe", a->recipe, "Recipe file (YAML or JSON)")->required();
  sub->add_option("--out", a->out, "Output model folder (default: train.out in the recipe)");
  sub->add_option("--data", a->data, "Data folder (default: the recipe's data.path)");
  sub->add_option("--set", a->sets, "Override a recipe value, e.g. train.epochs=2");
  return [a, &common]() -> int {
    nlohmann::json r = load_yaml_or_json(a->recipe);
    apply_overrides(r, a->sets);
    std::vector<std::string> problems;
    for (auto it = r.begin(); it != r.end(); ++it)
      if (it.key() != "model" && it.key() != "train" && it.key() != "data")
        problems.push_back("/" + it.key() + ": unknown key for pare train (known: model, train, data)");
    PARE_CHECK(r.contains("model") && r["model"].is_object(), a->recipe,
               ": /model: expected a mapping with the architecture");
    ArchConfig cfg = config_from_json(r["model"], a->recipe + ": /model");
    TrainOptions o;
    std::string out, init_from;
    {
      FieldReader t(r.value("train", nlohmann::json::object()), "/train", problems);
      o.epochs = static_cast<int>(t.integer("epochs", 1, 1, 10000));
      o.batch_size = t.integer("batch_size", 128, 1, 1 << 20);
      o.lr = t.number("lr", 1e-3, 0.0, 10.0);
      o.weight_decay = t.number("weight_decay", 0.05, 0.0, 10.0);
      o.warmup_steps = t.integer("warmup_steps", 100, 0);
      o.clip_grad_norm = t.number("clip_grad_norm", 1.0, 0.0);
      o.label_smoothing = t.number("label_smoothing", 0.0, 0.0, 1.0, false);
      o.hflip = t.boolean("hflip", false);
      o.translate = t.integer("translate", 0, 0, 16);
      o.seed = static_cast<uint64_t>(t.integer("seed", 0, 0));
      o.limit_train = t.integer("limit_train", -1, -1);
      o.steps = t.integer("steps", 0, 0);
      o.seq_len = t.integer("seq_len", 128, 2, 1 << 16);
      o.log_every = t.integer("log_every", 50, 0);
      out = t.string("out", "");
      init_from = t.string("init_from", "");
      t.reject_unknown();
    }
    if (cfg.is_lm()) {
      if (!a->out.empty()) out = a->out;
      return train_lm_command(r, a->recipe, cfg, o, out, problems);
    }
    std::string data_dir = kDefaultFashionMnistDir;
    {
      FieldReader d(r.value("data", nlohmann::json::object()), "/data", problems);
      d.string("dataset", "fashion-mnist", {"fashion-mnist"});
      data_dir = d.string("path", data_dir);
      d.reject_unknown();
    }
    if (!problems.empty()) throw RecipeError(a->recipe, problems);
    if (!a->out.empty()) out = a->out;
    PARE_CHECK(!out.empty(), a->recipe, ": /train/out: no output folder (set it or pass --out)");
    if (!a->data.empty()) data_dir = a->data;

    ImageDataset train = load_fashion_mnist(data_dir, "train");
    ImageDataset test = load_fashion_mnist(data_dir, "test");
    Model m = family_by_name(cfg.family).init(cfg, o.seed);
    if (!init_from.empty()) {
      // Continue training a saved model (a second stage with its own schedule); its config must
      // match the recipe's model: section.
      Model start = load_model(init_from);
      PARE_CHECK(start.config.layers == m.config.layers && start.config.norm == m.config.norm &&
                     start.config.num_labels == m.config.num_labels,
                 a->recipe, ": /train/init_from: ", init_from,
                 " does not have the architecture of /model");
      m = std::move(start);
    }
    std::cerr << "train: " << cfg.family << " with " << m.num_params() << " params, "
              << model_flops(m) << " FLOPs/image, " << at::get_num_threads() << " threads\n";
    TrainResult res = train_classifier(m, train, &test, o);
    AccuracyResult acc = evaluate_accuracy(m, test, 500);
    m.config.history.push_back({{"step", "train"},
                                {"recipe", a->recipe},
                                {"init_from", init_from},
                                {"epochs", o.epochs},
                                {"seed", o.seed},
                                {"seconds", res.seconds},
                                {"threads", at::get_num_threads()},
                                {"test_accuracy", acc.accuracy}});
    StagedDir dir(out);
    save_model(m, dir.staging());
    nlohmann::json log = {{"recipe", r},
                          {"seconds", res.seconds},
                          {"threads", at::get_num_threads()},
                          {"steps", res.steps},
                          {"final_loss", res.final_loss},
                          {"test_accuracy_per_epoch", res.test_accuracy},
                          {"test_accuracy", acc.accuracy},
                          {"params", m.num_params()}};
    write_file_atomic(dir.file("train.json"), log.dump(2) + "\n");
    dir.commit();
    std::cout << "trained " << out << ": test accuracy " << acc.accuracy * 100 << "% ("
              << acc.correct << "/" << acc.total << "), " << res.seconds << " s on "
              << at::get_num_threads() << " threads\n";
    return 0;
  };
}

}  // namespace pare::cli
