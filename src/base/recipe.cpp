#include "base/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>

#include "base/fileio.h"

namespace pare {

RecipeError::RecipeError(const std::string& file, std::vector<std::string> p)
    : InputError([&] {
        std::string s = file + ": " + std::to_string(p.size()) + " problem(s): ";
        for (size_t i = 0; i < p.size(); ++i) s += (i ? "; " : "") + p[i];
        return s;
      }()),
      problems(std::move(p)) {}

namespace {

nlohmann::json scalar_to_json(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted
  if (s == "null" || s == "~" || s.empty()) return nullptr;
  if (s == "true" || s == "True") return true;
  if (s == "false" || s == "False") return false;
  try {
    size_t pos = 0;
    long long v = std::stoll(s, &pos);
    if (pos == s.size()) return v;
  } catch (...) {
  }
  try {
    size_t pos = 0;
    double v = std::stod(s, &pos);
    if (pos == s.size()) return v;
  } catch (...) {
  }
  return s;
}

nlohmann::json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      return scalar_to_json(n);
    case YAML::NodeType::Sequence: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& e : n) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Map: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& kv : n) {
        const std::string key = kv.first.as<std::string>();
        if (o.contains(key))
          throw YAML::ParserException(kv.first.Mark(), "duplicate key '" + key + "'");
        o[key] = to_json(kv.second);
      }
      return o;
    }
    default:
      return nullptr;
  }
}

}  // namespace

nlohmann::json load_yaml_or_json(const std::string& path) {
  std::string text = read_file(path);
  try {
    YAML::Node n = YAML::Load(text);
    nlohmann::json j = to_json(n);
    PARE_CHECK(j.is_object(), path, ": expected a mapping at the top level");
    return j;
  } catch (const YAML::Exception& e) {
    throw InputError(concat(path, ": line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ",
                         e.msg));
  }
}

void apply_overrides(nlohmann::json& j, const std::vector<std::string>& sets) {
  for (const auto& s : sets) {
    auto eq = s.find('=');
    PARE_CHECK(eq != std::string::npos && eq > 0, "--set '", s, "': expected KEY=VALUE");
    std::string key = s.substr(0, eq), value = s.substr(eq + 1);
    nlohmann::json* cur = &j;
    size_t start = 0;
    while (true) {
      size_t dot = key.find('.', start);
      std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      PARE_CHECK(!part.empty(), "--set '", s, "': empty key component");
      nlohmann::json* next = nullptr;
      if (cur->is_array()) {
        size_t idx = 0;
        try {
          idx = std::stoul(part);
        } catch (...) {
          throw InputError(concat("--set '", s, "': '", part, "' is not a list index"));
        }
        PARE_CHECK(idx < cur->size(), "--set '", s, "': index ", idx, " past the end (",
                   cur->size(), " entries)");
        next = &(*cur)[idx];
      } else {
        if (!cur->is_object()) *cur = nlohmann::json::object();
        next = &(*cur)[part];
      }
      cur = next;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    try {
      *cur = to_json(YAML::Load(value));
    } catch (const YAML::Exception& e) {
      throw InputError(concat("--set '", s, "': ", e.msg));
    }
  }
}

FieldReader::FieldReader(const nlohmann::json& obj, std::string path,
                         std::vector<std::string>& problems)
    : obj_(obj), path_(std::move(path)), problems_(problems) {
  if (!obj_.is_object() && !obj_.is_null())
    problems_.push_back(path_ + ": expected a mapping, got " + obj_.dump());
}

void FieldReader::problem(const std::string& key, const std::string& what) {
  problems_.push_back(path_ + "/" + key + ": " + what);
}

namespace {
std::string range_text(std::optional<double> lo, std::optional<double> hi, bool hi_incl) {
  if (lo && hi) return concat(" in [", *lo, ", ", *hi, hi_incl ? "]" : ")");
  if (lo) return concat(" >= ", *lo);
  if (hi) return concat(hi_incl ? " <= " : " < ", *hi);
  return "";
}
}  // namespace

double FieldReader::number(const std::string& key, double def, std::optional<double> lo,
                           std::optional<double> hi, bool hi_incl) {
  seen_.push_back(key);
  if (!obj_.is_object() || !obj_.contains(key)) return def;
  const auto& v = obj_[key];
  std::string want = "a number" + range_text(lo, hi, hi_incl);
  if (!v.is_number()) {
    problem(key, "expected " + want + ", got " + v.dump());
    return def;
  }
  double d = v.get<double>();
  if (!std::isfinite(d) || (lo && d < *lo) || (hi && (hi_incl ? d > *hi : d >= *hi))) {
    problem(key, "expected " + want + ", got " + v.dump());
    return def;
  }
  return d;
}

int64_t FieldReader::integer(const std::string& key, int64_t def, std::optional<int64_t> lo,
                             std::optional<int64_t> hi) {
  seen_.push_back(key);
  if (!obj_.is_object() || !obj_.contains(key)) return def;
  const auto& v = obj_[key];
  std::optional<double> l, h;
  if (lo) l = double(*lo);
  if (hi) h = double(*hi);
  std::string want = "an integer" + range_text(l, h, true);
  if (!v.is_number_integer() || (lo && v.get<int64_t>() < *lo) || (hi && v.get<int64_t>() > *hi)) {
    problem(key, "expected " + want + ", got " + v.dump());
    return def;
  }
  return v.get<int64_t>();
}

bool FieldReader::boolean(const std::string& key, bool def) {
  seen_.push_back(key);
  if (!obj_.is_object() || !obj_.contains(key)) return def;
  const auto& v = obj_[key];
  if (!v.is_boolean()) {
    problem(key, "expected true or false, got " + v.dump());
    return def;
  }
  return v.get<bool>();
}

std::string FieldReader::string(const std::string& key, const std::string& def,
                                const std::vector<std::string>& allowed) {
  seen_.push_back(key);
  if (!obj_.is_object() || !obj_.contains(key)) return def;
  const auto& v = obj_[key];
  std::string opts;
  for (size_t i = 0; i < allowed.size(); ++i) opts += (i ? ", " : "") + allowed[i];
  if (!v.is_string() ||
      (!allowed.empty() && std::find(allowed.begin(), allowed.end(), v.get<std::string>()) ==
                               allowed.end())) {
    problem(key, "expected " + (allowed.empty() ? std::string("a string") : "one of " + opts) +
                     ", got " + v.dump());
    return def;
  }
  return v.get<std::string>();
}

std::vector<int64_t> FieldReader::int_list(const std::string& key, const std::vector<int64_t>& def) {
  seen_.push_back(key);
  if (!obj_.is_object() || !obj_.contains(key)) return def;
  const auto& v = obj_[key];
  std::vector<int64_t> out;
  bool ok = v.is_array();
  if (ok)
    for (const auto& e : v) {
      if (!e.is_number_integer() || e.get<int64_t>() <= 0) ok = false;
      else out.push_back(e.get<int64_t>());
    }
  if (!ok) {
    problem(key, "expected a list of positive integers, got " + v.dump());
    return def;
  }
  return out;
}

std::vector<double> FieldReader::number_list(const std::string& key, const std::vector<double>& def,
                                             std::optional<double> lo, std::optional<double> hi,
                                             bool integers) {
  seen_.push_back(key);
  if (!obj_.is_object() || !obj_.contains(key)) return def;
  nlohmann::json v = obj_[key];
  if (v.is_number()) v = nlohmann::json::array({v});
  std::vector<double> out;
  bool ok = v.is_array();
  if (ok)
    for (const auto& e : v) {
      if (!e.is_number() || (integers && !e.is_number_integer())) {
        ok = false;
        break;
      }
      double x = e.get<double>();
      if ((lo && x < *lo) || (hi && x > *hi)) ok = false;
      out.push_back(x);
    }
  if (!ok) {
    std::string range = lo && hi ? concat(" in [", *lo, ", ", *hi, "]") : std::string();
    problem(key, concat("expected a list of ", integers ? "integers" : "numbers", range, ", got ",
                        v.dump()));
    return def;
  }
  return out;
}

void FieldReader::reject_unknown() {
  if (!obj_.is_object()) return;
  for (auto it = obj_.begin(); it != obj_.end(); ++it)
    if (std::find(seen_.begin(), seen_.end(), it.key()) == seen_.end()) {
      std::string known;
      for (size_t i = 0; i < seen_.size(); ++i) known += (i ? ", " : "") + seen_[i];
      problem(it.key(), "unknown key (known: " + known + ")");
    }
}

}  // namespace pare
