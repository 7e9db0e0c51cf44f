// Hugging Face ViTForImageClassification tensor names <-> pare flat names, both ways.
#include "test_util.h"
#include "families/vit.h"

namespace pare {
namespace {

struct Pair {
  std::string flat, hf;
};

std::vector<Pair> all_pairs(int layers) {
  std::vector<Pair> p = {
      {"cls_token", "vit.embeddings.cls_token"},
      {"pos_embd", "vit.embeddings.position_embeddings"},
      {"patch_embd.weight", "vit.embeddings.patch_embeddings.projection.weight"},
      {"patch_embd.bias", "vit.embeddings.patch_embeddings.projection.bias"},
      {"out_norm.weight", "vit.layernorm.weight"},
      {"out_norm.bias", "vit.layernorm.bias"},
      {"cls_head.weight", "classifier.weight"},
      {"cls_head.bias", "classifier.bias"},
  };
  const std::vector<std::pair<std::string, std::string>> per_layer = {
      {"attn_norm", "layernorm_before"},
      {"attn_q", "attention.attention.query"},
      {"attn_k", "attention.attention.key"},
      {"attn_v", "attention.attention.value"},
      {"attn_o", "attention.output.dense"},
      {"ffn_norm", "layernorm_after"},
      {"ffn_up", "intermediate.dense"},
      {"ffn_down", "output.dense"},
  };
  for (int l : {0, 1, 7, layers}) {
    const std::string n = std::to_string(l);
    for (const auto& [f, h] : per_layer)
      for (const char* part : {"weight", "bias"})
        p.push_back({"blk." + n + "." + f + "." + part,
                     "vit.encoder.layer." + n + "." + h + "." + part});
    p.push_back({"blk." + n + ".attn_shortcut", "pare.blk." + n + ".attn_shortcut"});
    p.push_back({"blk." + n + ".ffn_shortcut", "pare.blk." + n + ".ffn_shortcut"});
  }
  return p;
}

TEST(VitNames, EveryNameMapsBothWays) {
  const auto pairs = all_pairs(23);
  EXPECT_EQ(pairs.size(), 8u + 4u * 18u);
  for (const auto& [flat, hf] : pairs) {
    EXPECT_EQ(vit_hf_name(flat), hf) << flat;
    EXPECT_EQ(vit_flat_name(hf), flat) << hf;
  }
}

TEST(VitNames, ShortcutsArePareOnly) {
  EXPECT_EQ(vit_hf_name("blk.3.attn_shortcut"), "pare.blk.3.attn_shortcut");
  EXPECT_EQ(vit_hf_name("blk.12.ffn_shortcut"), "pare.blk.12.ffn_shortcut");
  EXPECT_EQ(vit_flat_name("pare.blk.3.attn_shortcut"), "blk.3.attn_shortcut");
  // Shortcuts are plain matrices: no weight/bias parts.
  EXPECT_EQ(vit_hf_name("blk.3.attn_shortcut.weight"), "");
  EXPECT_EQ(vit_flat_name("pare.blk.3.attn_shortcut.weight"), "");
}

TEST(VitNames, UnknownNamesMapToEmpty) {
  for (const char* flat :
       {"", "blk", "blk.0", "blk.0.attn_q", "blk.x.attn_q.weight", "blk.0.attn_qq.weight",
        "blk.0.attn_q.scale", "pos_embd.weight", "cls_head", "patch_embd", "out_norm",
        "vit.layernorm.weight", "blk.-1.attn_q.weight", " blk.0.attn_q.weight"})
    EXPECT_EQ(vit_hf_name(flat), "") << "'" << flat << "'";
  for (const char* hf :
       {"", "vit", "classifier", "classifier.scale", "vit.encoder.layer.0.attention.query.weight",
        "vit.encoder.layer.0.layernorm_before", "vit.encoder.layer.a.output.dense.weight",
        "vit.encoder.layer.0.output.dense.scale", "vit.pooler.dense.weight",
        "vit.encoder.layer.0.attention.attention.query.weight.extra", "pare.cls_token",
        "pare.blk.0.attn_q.weight", "pare.blk.0.other_shortcut", "blk.0.attn_q.weight",
        "cls_token", "vit.embeddings.mask_token"})
    EXPECT_EQ(vit_flat_name(hf), "") << "'" << hf << "'";
}

}  // namespace
}  // namespace pare
