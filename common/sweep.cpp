#include "common/sweep.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "common/errors.h"
#include "common/text.h"

namespace taskfarm {
namespace {

// Returns: a scalar as text: integers without a fraction, other numbers as JSON would write
// them, strings as they are, booleans true/false. Throws: SetupError for anything else.
std::string scalar_text(const google::protobuf::Value& v, std::string_view key) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kNumberValue: {
      const double d = v.number_value();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9007199254740992.0) {
        return fmt::format("{}", static_cast<int64_t>(d));
      }
      return fmt::format("{}", d);
    }
    case google::protobuf::Value::kStringValue:
      if (v.string_value().size() > 4096) {
        throw SetupError(fmt::format("params: the value of '{}' is longer than 4096 bytes", key));
      }
      return v.string_value();
    case google::protobuf::Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    default:
      throw SetupError(fmt::format(
          "params: the value of '{}' must be a number, a string or a boolean", printable(key)));
  }
}

void check_key(const std::string& key) {
  if (!valid_param_key(key)) {
    throw SetupError(fmt::format("params: '{}' is not a parameter name (letters, digits and _, "
                                 "not starting with a digit, at most 64)",
                                 printable(key)));
  }
}

}  // namespace

bool valid_param_key(std::string_view key) {
  if (key.empty() || key.size() > 64 || std::isdigit(static_cast<unsigned char>(key[0]))) {
    return false;
  }
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

Sweep Sweep::parse(const google::protobuf::Value& params, uint64_t max_points) {
  Sweep s;
  if (params.kind_case() == google::protobuf::Value::kListValue) {
    const auto& list = params.list_value().values();
    if (static_cast<uint64_t>(list.size()) > max_points) {
      throw SetupError(fmt::format("params: {} points, above the limit of {}", list.size(),
                                   max_points));
    }
    std::set<std::string> keys;
    for (int i = 0; i < list.size(); ++i) {
      if (list[i].kind_case() != google::protobuf::Value::kStructValue) {
        throw SetupError(fmt::format("params: point {} is not an object like {{\"x\": 1}}", i + 1));
      }
      Point p;
      for (const auto& [key, value] : list[i].struct_value().fields()) {
        check_key(key);
        p.emplace_back(key, scalar_text(value, key));
        keys.insert(key);
      }
      std::sort(p.begin(), p.end());
      s.list_.push_back(std::move(p));
    }
    s.keys_.assign(keys.begin(), keys.end());
    s.points_ = s.list_.size();
    return s;
  }
  if (params.kind_case() == google::protobuf::Value::kStructValue) {
    const auto& fields = params.struct_value().fields();
    auto grid = fields.find("grid");
    if (fields.size() != 1 || grid == fields.end() ||
        grid->second.kind_case() != google::protobuf::Value::kStructValue) {
      throw SetupError("params: expected a list of points or {\"grid\": {\"x\": [...], ...}}");
    }
    std::vector<std::pair<std::string, const google::protobuf::ListValue*>> axes;
    for (const auto& [key, values] : grid->second.struct_value().fields()) {
      check_key(key);
      if (values.kind_case() != google::protobuf::Value::kListValue ||
          values.list_value().values().empty()) {
        throw SetupError(fmt::format("params: grid axis '{}' must be a non-empty list", key));
      }
      axes.emplace_back(key, &values.list_value());
    }
    if (axes.empty()) throw SetupError("params: the grid has no axes");
    std::sort(axes.begin(), axes.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    uint64_t points = 1;
    for (const auto& [key, list] : axes) {
      const auto n = static_cast<uint64_t>(list->values().size());
      if (points > max_points / n) {
        throw SetupError(fmt::format("params: the grid has more than {} points", max_points));
      }
      points *= n;
      std::vector<std::string> values;
      for (const auto& v : list->values()) values.push_back(scalar_text(v, key));
      s.keys_.push_back(key);
      s.axes_.push_back(std::move(values));
    }
    s.grid_ = true;
    s.points_ = points;
    return s;
  }
  if (params.kind_case() == google::protobuf::Value::KIND_NOT_SET ||
      params.kind_case() == google::protobuf::Value::kNullValue) {
    return s;  // no sweep
  }
  throw SetupError("params: expected a list of points or {\"grid\": {\"x\": [...], ...}}");
}

Sweep::Point Sweep::point(uint64_t index) const {
  if (!grid_) return list_.at(index);
  Point p(keys_.size());
  for (size_t k = keys_.size(); k-- > 0;) {  // the last key varies fastest
    const uint64_t n = axes_[k].size();
    p[k] = {keys_[k], axes_[k][index % n]};
    index /= n;
  }
  return p;
}

}  // namespace taskfarm
