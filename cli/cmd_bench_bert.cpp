// pare bench bert-speed: forward throughput of a bert model on a real sentence file (SST-2 dev by
// default) in the packed (padding-free) and the padded layout (families/bert.h), as JSON lines on
// stdout; scripts/bert_speed.py sets it beside the same model in PyTorch eager (the batches and
// pare's logits are dumped for it with --dump, so both sides run the same batches and the script
// checks that they compute the same logits).
//
// Data: every sentence of --data, tokenised as the model's own tokenizer does (vocab.txt and
// tokenizer_config.json's do_lower_case beside config.json; WordPiece, [CLS] … [SEP], cut to the
// model's positions), in file order, cut into consecutive batches of B sentences (the last one may
// be smaller), each padded with [PAD] to its own longest sentence: the file's natural length mix,
// not sorted by length. At batch 1, --b1-limit K times only the first K sentences.
//
// Timing, per batch size: one "pass" is the forward of every timed batch, back to back, under
// torch::NoGradGuard (tokenising and padding are done before and not timed). Passes of the two
// layouts alternate (packed, padded, packed, ...): --warmup untimed passes of each, then --reps
// timed ones; figures come from the median pass. Before timing, the logits of both layouts are
// compared (max |packed - padded| in the "batches" line).
//
// One JSON object a line: {"what":"model",...}, {"what":"data",...}, then per batch size
// {"what":"batches","batch":B,"batches":..,"sentences":..,"real_tokens":..,"positions":..,
// "padding_share":..,"max_abs_diff_packed_padded":..} and (unless --no-timing) one
// {"what":"forward","layout":"packed"|"padded","batch":B,"pass_ms":..,"pass_ms_min":..,
// "ms_per_batch":..,"sentences_per_second":..,"tokens_per_second":..} per layout. tokens/s counts
// real tokens (padding excluded) in both layouts; padding_share = padded positions / all positions.
#include <ATen/Parallel.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fileio.h"
#include "bench_util.h"
#include "data/text_data.h"
#include "data/wordpiece.h"
#include "families/bert.h"
#include "families/checkpoint.h"
#include "io/safetensors.h"
#include "tasks/text_batches.h"

namespace pare::cli {

namespace {

constexpr const char* kDefaultSst2Dev = "../shared/data/sst2/stsa.binary.dev";

// do_lower_case of the model folder's tokenizer_config.json; true (BertTokenizer's default) when
// the file or the key is missing.
bool lowercase_of(const std::string& model_dir) {
  const std::string path = model_dir + "/tokenizer_config.json";
  if (!file_exists(path)) return true;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(concat(path, ": not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object() || !j.contains("do_lower_case") || j["do_lower_case"].is_null()) return true;
  PARE_CHECK(j["do_lower_case"].is_boolean(), path, ": do_lower_case: expected true or false");
  return j["do_lower_case"].get<bool>();
}

// The timed batches of one batch size and what they hold.
struct BatchSet {
  int64_t batch = 0, sentences = 0, real_tokens = 0, positions = 0;
  std::vector<torch::Tensor> ids;  // int64 [rows, T] each
};

BatchSet make_batches(const Encoded& e, int64_t batch, int64_t limit) {
  BatchSet s;
  s.batch = batch;
  const int64_t n = limit > 0 ? std::min<int64_t>(limit, static_cast<int64_t>(e.ids.size()))
                              : static_cast<int64_t>(e.ids.size());
  for (int64_t i = 0; i < n; i += batch) {
    std::vector<int64_t> idx;
    for (int64_t j = i; j < std::min(n, i + batch); ++j) {
      idx.push_back(j);
      s.real_tokens += static_cast<int64_t>(e.ids[j].size());
    }
    torch::Tensor ids = pad_batch(e.ids, idx, e.pad);
    s.sentences += ids.size(0);
    s.positions += ids.numel();
    s.ids.push_back(ids);
  }
  return s;
}

torch::Tensor run_pass(const Model& m, const BatchSet& s, BertLayout layout, bool keep) {
  std::vector<torch::Tensor> out;
  torch::Tensor last;
  for (const auto& ids : s.ids) {
    last = bert_forward(m, ids, layout);
    if (keep) out.push_back(last);
  }
  return keep ? torch::cat(out, 0) : last;
}

}  // namespace

BenchCommand bench_bert_speed(CLI::App* bench) {
  struct Args {
    std::string model = "models/bert-sst2", data = kDefaultSst2Dev, dump;
    std::vector<int64_t> batches{1, 32, 128};
    int64_t reps = 5, warmup = 1, b1_limit = 0;
    bool timing = true;
  };
  auto a = std::make_shared<Args>();
  auto* sub = bench->add_subcommand(
      "bert-speed", "Forward throughput of a bert model on a sentence file, packed vs padded layout "
                    "(tokens/s), JSON lines on stdout (scripts/bert_speed.py sets it beside PyTorch "
                    "eager)");
  sub->add_option("--model", a->model, "bert model folder (config.json, model.safetensors, vocab.txt, "
                                       "tokenizer_config.json)")
      ->capture_default_str();
  sub->add_option("--data", a->data, "Labelled sentence file (data/text_data.h formats)")
      ->capture_default_str();
  sub->add_option("--batches", a->batches, "Batch sizes (consecutive sentences in file order)")
      ->capture_default_str()
      ->delimiter(',');
  sub->add_option("--reps", a->reps, "Timed passes over the data per layout and batch size")
      ->capture_default_str();
  sub->add_option("--warmup", a->warmup, "Untimed passes first")->capture_default_str();
  sub->add_option("--b1-limit", a->b1_limit,
                  "At batch 1, time only the first K sentences (0: all of them)")
      ->capture_default_str();
  sub->add_option("--dump", a->dump,
                  "Write, per batch size B, the timed batches (\"bB.ids\": the padded [rows, T] "
                  "batches flattened one after another, \"bB.shapes\": [batches, 2] rows and T) and "
                  "pare's logits in both layouts (\"bB.logits_packed\", \"bB.logits_padded\") to "
                  "this safetensors file");
  sub->add_flag("!--no-timing", a->timing,
                "Skip the timing (with --dump: only the correctness data)");
  return {sub, [a]() -> int {
    PARE_CHECK(a->reps > 0 && a->warmup >= 0, "--reps must be positive and --warmup >= 0");
    PARE_CHECK(a->b1_limit >= 0, "--b1-limit must be >= 0");
    PARE_CHECK(!a->batches.empty(), "--batches: expected at least one batch size");
    for (int64_t b : a->batches) PARE_CHECK(b > 0, "--batches: expected positive sizes, got ", b);
    PARE_CHECK(file_exists(a->data), a->data, ": no such data file");
    Model m = load_model(a->model);
    PARE_CHECK(m.config.is_text_encoder(), a->model, ": bert-speed needs a bert model, got family ",
               m.config.family);
    const std::string vocab = a->model + "/vocab.txt";
    PARE_CHECK(file_exists(vocab), a->model, ": no vocab.txt beside the model");
    const bool lowercase = lowercase_of(a->model);
    const WordPiece tok = WordPiece::load(vocab, lowercase);
    PARE_CHECK(tok.vocab_size() == m.config.vocab_size && tok.pad_id() == m.config.pad_token_id, vocab,
               ": ", tok.vocab_size(), " tokens with [PAD] = ", tok.pad_id(), ", but the model has vocab_size ",
               m.config.vocab_size, " and pad_token_id ", m.config.pad_token_id);
    const Encoded e = encode_sentences(tok, read_labelled_sentences(a->data), m.config.max_position_embeddings,
                                       -1, a->data);

    torch::NoGradGuard ng;
    const int threads = at::get_num_threads();
    auto line = [](const nlohmann::json& j) { std::cout << j.dump() << "\n" << std::flush; };
    line({{"what", "model"}, {"model", a->model}, {"threads", threads}, {"params", m.num_params()},
          {"hidden_size", m.config.hidden_size}, {"layers", m.config.num_hidden_layers},
          {"num_labels", m.config.num_labels}, {"reps", a->reps}, {"warmup", a->warmup}});
    line({{"what", "data"}, {"data", a->data}, {"sentences", e.ids.size()}, {"tokens", e.tokens()},
          {"mean_tokens", e.mean_length()}, {"truncated", e.truncated}, {"lowercase", lowercase},
          {"vocab_size", tok.vocab_size()}});

    std::map<std::string, torch::Tensor> dump;
    for (int64_t b : a->batches) {
      const BatchSet s = make_batches(e, b, b == 1 ? a->b1_limit : 0);
      const torch::Tensor packed = run_pass(m, s, BertLayout::kPacked, true);
      const torch::Tensor padded = run_pass(m, s, BertLayout::kPadded, true);
      const double diff = (packed - padded).abs().max().item<double>();
      const int64_t nb = static_cast<int64_t>(s.ids.size());
      line({{"what", "batches"}, {"batch", b}, {"batches", nb}, {"sentences", s.sentences},
            {"full_pass", s.sentences == static_cast<int64_t>(e.ids.size())},
            {"real_tokens", s.real_tokens}, {"positions", s.positions},
            {"padding_share", double(s.positions - s.real_tokens) / double(s.positions)},
            {"max_abs_diff_packed_padded", diff}});
      if (!a->dump.empty()) {
        std::vector<torch::Tensor> flat;
        torch::Tensor shapes = torch::empty({nb, 2}, torch::kLong);
        auto sh = shapes.accessor<int64_t, 2>();
        for (int64_t i = 0; i < nb; ++i) {
          flat.push_back(s.ids[i].reshape({-1}));
          sh[i][0] = s.ids[i].size(0);
          sh[i][1] = s.ids[i].size(1);
        }
        const std::string p = "b" + std::to_string(b) + ".";
        dump[p + "ids"] = torch::cat(flat, 0).contiguous();
        dump[p + "shapes"] = shapes;
        dump[p + "logits_packed"] = packed.to(torch::kFloat32).contiguous();
        dump[p + "logits_padded"] = padded.to(torch::kFloat32).contiguous();
      }
      if (!a->timing) continue;

      std::map<BertLayout, std::vector<double>> ms;
      for (int64_t r = 0; r < a->warmup + a->reps; ++r) {
        for (BertLayout layout : {BertLayout::kPacked, BertLayout::kPadded}) {
          const double t0 = now_ms();
          (void)run_pass(m, s, layout, false);
          const double t = now_ms() - t0;
          if (r >= a->warmup) ms[layout].push_back(t);
        }
      }
      for (BertLayout layout : {BertLayout::kPacked, BertLayout::kPadded}) {
        std::vector<double>& v = ms[layout];
        std::sort(v.begin(), v.end());
        const double med = v[v.size() / 2], sec = med / 1000.0;
        line({{"what", "forward"}, {"layout", layout == BertLayout::kPacked ? "packed" : "padded"},
              {"batch", b}, {"threads", threads}, {"batches", nb}, {"sentences", s.sentences},
              {"real_tokens", s.real_tokens}, {"positions", s.positions},
              {"padding_share", double(s.positions - s.real_tokens) / double(s.positions)},
              {"pass_ms", med}, {"pass_ms_min", v.front()}, {"ms_per_batch", med / double(nb)},
              {"sentences_per_second", double(s.sentences) / sec},
              {"tokens_per_second", double(s.real_tokens) / sec}});
      }
    }
    if (!a->dump.empty()) write_safetensors(a->dump, dump);
    return 0;
  }};
}

}  // namespace pare::cli
