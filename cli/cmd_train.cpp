// pare train --recipe R [--out DIR] [--data DIR] [--set k=v]: trains a model from a recipe's
// `model:` and `train:` sections and saves it (config.json + model.safetensors + train.json).
// Graph transformers (model_type: gps) take `data: {dataset: graph, path, split_seed, cache}` and
// get their encoder vocabularies, task, output width and graph statistics from the data.
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
#include "gps.h"
#include "graph_eval.h"
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

// The value of integer key `key` of a JSON object, or `def` when absent or not an integer (the
// config reader reports the wrong type later).
int64_t json_int(const nlohmann::json& o, const char* key, int64_t def) {
  return o.is_object() && o.contains(key) && o[key].is_number_integer() ? o[key].get<int64_t>()
                                                                        : def;
}
std::string json_str(const nlohmann::json& o, const char* key, const std::string& def) {
  return o.is_object() && o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : def;
}

// pare train for graph transformers (gps). data: {dataset: graph, path: TU folder | HIV.csv |
// delaney-processed.csv, split: random | all, split_seed, cache: folder ("none": off)}. The
// model section is completed from the data where it leaves a field out: task and num_labels,
// node encoder (Atom for molecules, TypeDictNode for TU node labels, LinearNode for dense node
// attributes) and its vocabularies, edge encoder (Bond / TypeDictEdge when the data has edge
// features and the local model reads them, else None), the split and the graph statistics of the
// training split (FLOPs per graph). train.warmup_epochs (when given) sets the warm-up in epochs.
// Keeps the epoch with the best validation metric; writes config.json, model.safetensors and
// train.json (per-epoch loss and valid/test metric, times, the resolved recipe).
int train_graph_command(nlohmann::json r, const std::string& recipe, const std::string& data_arg,
                        TrainOptions o, int64_t warmup_epochs, const std::string& out,
                        std::vector<std::string>& problems) {
  GraphDataOptions go;
  std::string path;
  {
    FieldReader d(r.value("data", nlohmann::json::object()), "/data", problems);
    d.string("dataset", "graph", {"graph"});
    path = d.string("path", "");
    go.split = d.string("split", "random", {"random", "all"});
    go.split_seed = static_cast<uint64_t>(d.integer("split_seed", 0, 0));
    go.cache_dir = d.string("cache", "");
    d.reject_unknown();
    if (path.empty() && data_arg.empty())
      d.problem("path", "expected the data set: a TU folder, HIV.csv or delaney-processed.csv");
  }
  nlohmann::json& mj = r["model"];
  if (!mj.contains("gps")) mj["gps"] = nlohmann::json::object();
  nlohmann::json& gj = mj["gps"];
  if (!gj.is_object()) problems.push_back("/model/gps: expected a mapping");
  if (!problems.empty()) throw RecipeError(recipe, problems);
  PARE_CHECK(!out.empty(), recipe, ": /train/out: no output folder (set it or pass --out)");
  if (!data_arg.empty()) path = data_arg;
  go.rwse_steps = std::max<int64_t>(0, json_int(gj, "rwse_steps", 0));
  go.lappe_k = std::max<int64_t>(0, json_int(gj, "lappe_k", 0));
  const auto t_data = std::chrono::steady_clock::now();
  GraphData data = load_graph_data(path, go);
  const double data_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_data).count();
  const GraphDataset& ds = data.ds;
  // Complete the model section from the data.
  const bool molecules = data.kind != "tu";
  const std::string local = json_str(gj, "local_model", "GINE");
  if (!gj.contains("task")) gj["task"] = ds.task;
  if (!mj.contains("num_labels")) mj["num_labels"] = ds.task == "classification" ? ds.num_classes : 1;
  if (!gj.contains("node_encoder"))
    gj["node_encoder"] = molecules ? "Atom" : ds.node_cat_dims > 0 ? "TypeDictNode" : "LinearNode";
  const std::string node_enc = json_str(gj, "node_encoder", "");
  if (node_enc == "LinearNode" && !gj.contains("node_attr_dims")) gj["node_attr_dims"] = ds.node_attr_dims;
  if (node_enc == "TypeDictNode" && !gj.contains("node_vocab") && ds.node_cat_dims > 0)
    gj["node_vocab"] = std::vector<int64_t>{ds.node_vocab[0]};
  if (node_enc == "Atom" && !gj.contains("node_vocab")) gj["node_vocab"] = ds.node_vocab;
  const bool reads_edges = local == "GINE" || local == "CustomGatedGCN";
  if (!gj.contains("edge_encoder"))
    gj["edge_encoder"] = !reads_edges || ds.edge_cat_dims == 0 ? "None"
                         : molecules                           ? "Bond"
                                                               : "TypeDictEdge";
  const std::string edge_enc = json_str(gj, "edge_encoder", "");
  if (edge_enc == "TypeDictEdge" && !gj.contains("edge_vocab") && ds.edge_cat_dims > 0)
    gj["edge_vocab"] = std::vector<int64_t>{ds.edge_vocab[0]};
  if (edge_enc == "Bond" && !gj.contains("edge_vocab")) gj["edge_vocab"] = ds.edge_vocab;
  const GraphStats st = graph_stats(ds, ds.splits.at("train"));
  gj["stats_dataset"] = train_split_label(ds.name);
  gj["mean_nodes"] = st.mean_nodes;
  gj["mean_edges"] = st.mean_edges;
  gj["max_nodes"] = st.max_nodes;
  gj["max_edges"] = st.max_edges;
  gj["split"] = data.split;
  gj["split_seed"] = data.split_seed;
  ArchConfig cfg = config_from_json(mj, recipe + ": /model");
  check_graph_data_fits(cfg, ds, path);
  const int64_t n_train = o.limit_train >= 0
                              ? std::min<int64_t>(o.limit_train, ds.splits.at("train").size())
                              : static_cast<int64_t>(ds.splits.at("train").size());
  if (warmup_epochs >= 0)
    o.warmup_steps = warmup_epochs * ((n_train + o.batch_size - 1) / o.batch_size);
  Model m = gps_family().init(cfg, o.seed);
  int64_t flops = 0;
  for (const auto& row : m.family().costs(m)) flops += row.flops;
  std::cerr << "train: gps with " << m.num_params() << " params, " << flops
            << " FLOPs/graph at the training split's mean size; " << data.describe() << ", "
            << n_train << " training graphs; read in " << data_seconds << " s; "
            << at::get_num_threads() << " threads\n";
  GraphTrainResult res = train_graph(m, ds, o);
  // The kept (best validation) weights, measured again as `pare eval` will.
  GraphEvalResult valid = evaluate_graph(m, ds, ds.splits.at("valid"), o.eval_batch_size);
  GraphEvalResult test = evaluate_graph(m, ds, ds.splits.at("test"), o.eval_batch_size);
  m.config.history.push_back({{"step", "train"}, {"recipe", recipe}, {"data", path},
                              {"epochs", o.epochs}, {"best_epoch", res.best_epoch},
                              {"seed", o.seed}, {"seconds", res.run.seconds},
                              {"threads", at::get_num_threads()},
                              {"valid_" + res.metric, valid.value},
                              {"test_" + res.metric, test.value}});
  StagedDir dir(out);
  save_model(m, dir.staging());
  nlohmann::json epochs = nlohmann::json::array();
  for (const auto& e : res.epochs)
    epochs.push_back({{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"lr_end", e.lr},
                      {"valid_" + res.metric, e.valid}, {"valid_loss", e.valid_loss},
                      {"test_" + res.metric, e.test}, {"test_loss", e.test_loss},
                      {"train_seconds", e.train_seconds}, {"eval_seconds", e.eval_seconds},
                      {"elapsed_seconds", e.elapsed}});
  nlohmann::json log = {
      {"recipe", r},
      {"data", path},
      {"data_description", data.describe()},
      {"data_seconds", data_seconds},
      {"train_graphs", res.train_graphs},
      {"metric", res.metric},
      {"epochs", epochs},
      {"best_epoch", res.best_epoch},
      {"valid_" + res.metric, valid.value},
      {"valid_loss", valid.loss},
      {"test_" + res.metric, test.value},
      {"test_loss", test.loss},
      {"seconds", res.run.seconds},
      {"threads", at::get_num_threads()},
      {"steps", res.run.steps},
      {"warmup_steps", o.warmup_steps},
      {"final_loss", res.run.final_loss},
      {"params", m.num_params()},
      {"flops_per_graph_at_mean", flops}};
  write_file_atomic(dir.file("train.json"), log.dump(2) + "\n");
  dir.commit();
  std::cout << "trained " << out << ": " << res.metric << " valid " << valid.value << ", test "
            << test.value << " (epoch " << res.best_epoch << " of " << o.epochs
            << ", best validation), " << res.run.seconds << " s on " << at::get_num_threads()
            << " threads\n";
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
    // gps: the model section is completed from the data first (train_graph_command).
    const bool graph = r["model"].value("model_type", std::string()) == "gps";
    ArchConfig cfg = graph ? ArchConfig() : config_from_json(r["model"], a->recipe + ": /model");
    TrainOptions o;
    int64_t warmup_epochs = -1;
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
      if (graph) {
        warmup_epochs = t.integer("warmup_epochs", -1, 0, 10000);
        o.eval_batch_size = t.integer("eval_batch_size", 256, 1, 1 << 20);
      }
      t.reject_unknown();
    }
    if (graph) {
      if (!a->out.empty()) out = a->out;
      PARE_CHECK(init_from.empty(), a->recipe, ": /train/init_from: not supported for gps");
      return train_graph_command(r, a->recipe, a->data, o, warmup_epochs, out, problems);
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
