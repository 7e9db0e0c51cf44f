#include "data/images.h"

#include <zlib.h>

#include <filesystem>

#include "base/error.h"

namespace pare {
namespace {

std::string read_maybe_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files too
  PARE_CHECK(f, path, ": cannot open");
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, n);
  int err = 0;
  const std::string msg = gzerror(f, &err);  // copied: gzclose frees it
  gzclose(f);
  PARE_CHECK(n == 0 && err == Z_OK, path, ": read failed (", msg, "); truncated or corrupt");
  return out;
}

uint32_t be32(const std::string& s, size_t off) {
  return (uint32_t(uint8_t(s[off])) << 24) | (uint32_t(uint8_t(s[off + 1])) << 16) |
         (uint32_t(uint8_t(s[off + 2])) << 8) | uint32_t(uint8_t(s[off + 3]));
}

std::string find(const std::string& dir, const std::string& stem) {
  for (const char* ext : {".gz", ""}) {
    std::string p = dir + "/" + stem + ext;
    if (std::filesystem::exists(p)) return p;
  }
  throw InputError(concat(dir, ": ", stem, "(.gz) not found (expected the Fashion-MNIST idx files; ",
                       "install dataset-fashion-mnist or pass --data)"));
}

}  // namespace

void require_fashion_mnist(const std::string& dir, const std::string& split) {
  PARE_CHECK(std::filesystem::is_directory(dir), dir, ": data folder not found");
  const std::string prefix = split == "train" ? "train" : "t10k";
  find(dir, prefix + "-images-idx3-ubyte");
  find(dir, prefix + "-labels-idx1-ubyte");
}

ImageDataset load_fashion_mnist(const std::string& dir, const std::string& split) {
  PARE_CHECK(split == "train" || split == "test", "split must be train or test, got '", split, "'");
  PARE_CHECK(std::filesystem::is_directory(dir), dir, ": data folder not found");
  const std::string prefix = split == "train" ? "train" : "t10k";
  const std::string ip = find(dir, prefix + "-images-idx3-ubyte");
  const std::string lp = find(dir, prefix + "-labels-idx1-ubyte");
  const std::string im = read_maybe_gz(ip), lb = read_maybe_gz(lp);
  PARE_CHECK(im.size() >= 16 && be32(im, 0) == 2051, ip,
             ": bad header: expected idx3 magic 2051 at offset 0");
  PARE_CHECK(lb.size() >= 8 && be32(lb, 0) == 2049, lp,
             ": bad header: expected idx1 magic 2049 at offset 0");
  const int64_t n = be32(im, 4), h = be32(im, 8), w = be32(im, 12), nl = be32(lb, 4);
  PARE_CHECK(h > 0 && w > 0 && h <= 65536 && w <= 65536, ip, ": image size ", h, "x", w,
             " at offset 8 is out of range (expected 1..65536)");
  {
    const unsigned __int128 need = 16 + static_cast<unsigned __int128>(n) * h * w;
    std::string need_s;
    for (unsigned __int128 v = need; v > 0; v /= 10) need_s.insert(need_s.begin(), char('0' + int(v % 10)));
    PARE_CHECK(need == im.size(), ip, ": expected ", need_s, " bytes for ", n, " images of ", h,
               "x", w, ", got ", im.size(), " (truncated or corrupt)");
  }
  PARE_CHECK(n == nl, ip, ": ", n, " images but ", lp, " has ", nl, " labels");
  PARE_CHECK(static_cast<int64_t>(lb.size()) == 8 + n, lp, ": expected ", 8 + n, " bytes, got ",
             lb.size());
  ImageDataset d;
  d.images = torch::empty({n, 1, h, w}, torch::kUInt8);
  std::memcpy(d.images.data_ptr(), im.data() + 16, n * h * w);
  torch::Tensor l = torch::empty({n}, torch::kUInt8);
  std::memcpy(l.data_ptr(), lb.data() + 8, n);
  d.labels = l.to(torch::kLong);
  PARE_CHECK(n == 0 || d.labels.max().item<int64_t>() < 10, lp, ": label above 9");
  return d;
}

torch::Tensor normalize_images(const torch::Tensor& u8, const std::vector<double>& mean,
                               const std::vector<double>& std) {
  torch::Tensor x = u8.to(torch::kFloat32) / 255.0;
  const int64_t C = x.size(1);
  auto m = torch::tensor(std::vector<float>(mean.begin(), mean.end())).view({1, C, 1, 1});
  auto s = torch::tensor(std::vector<float>(std.begin(), std.end())).view({1, C, 1, 1});
  return (x - m) / s;
}

}  // namespace pare
