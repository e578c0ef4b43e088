#include "common/strict_json.h"

#include <fmt/core.h>

#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/text.h"

namespace taskfarm {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using Json = nlohmann::json;

// The JSON type a field's values must have.
enum class Want { kAny, kNumber, kBool, kString, kEnum, kObject, kMessage, kArray };

const char* describe(Want w) {
  switch (w) {
    case Want::kNumber: return "a number";
    case Want::kBool: return "true or false";
    case Want::kString: return "a string";
    case Want::kEnum: return "an enum name or number";
    case Want::kObject:
    case Want::kMessage: return "an object";
    case Want::kArray: return "an array";
    case Want::kAny: break;
  }
  return "a value";
}

// What one value of `field` must be. `element`: the value is inside the field's JSON array.
Want want_of(const FieldDescriptor* field, bool element) {
  if (field == nullptr) return Want::kAny;
  if (field->is_map()) return element ? Want::kAny : Want::kObject;
  if (field->is_repeated() && !element) return Want::kArray;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE: return Want::kNumber;
    case FieldDescriptor::CPPTYPE_BOOL: return Want::kBool;
    case FieldDescriptor::CPPTYPE_STRING: return Want::kString;
    case FieldDescriptor::CPPTYPE_ENUM: return Want::kEnum;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      // Well-known types (Struct, Timestamp, wrappers) have their own JSON forms.
      return field->message_type()->file()->name().rfind("google/protobuf/", 0) == 0
                 ? Want::kAny
                 : Want::kMessage;
  }
  return Want::kAny;
}

// Walks nlohmann's SAX events with a stack of the objects and arrays being read.
class Checker final : public nlohmann::json_sax<Json> {
 public:
  explicit Checker(const Descriptor& root) : root_(root) {}
  const std::optional<std::string>& problem() const { return problem_; }

  bool null() override { return value(nullptr); }
  bool boolean(bool) override { return value(Want::kBool); }
  bool number_integer(number_integer_t) override { return value(Want::kNumber); }
  bool number_unsigned(number_unsigned_t) override { return value(Want::kNumber); }
  bool number_float(number_float_t, const string_t&) override { return value(Want::kNumber); }
  bool string(string_t& s) override { return value(Want::kString, &s); }
  bool binary(binary_t&) override { return fail("binary values are not JSON"); }

  bool start_object(std::size_t) override {
    Frame f;
    if (stack_.empty()) {
      f.message = &root_;
    } else {
      const auto [field, want] = slot();
      if (want == Want::kMessage) {
        f.message = field->message_type();
      } else if (want != Want::kAny && want != Want::kObject) {
        return wrong_type(want, "an object");
      }
    }
    return push(std::move(f));
  }
  bool end_object() override {
    stack_.pop_back();
    return done();
  }
  bool start_array(std::size_t) override {
    Frame f;
    f.array = true;
    if (stack_.empty()) return fail("the top level must be an object, not an array");
    const auto [field, want] = slot();
    if (want == Want::kArray) {
      f.element = field;
    } else if (want != Want::kAny) {
      return wrong_type(want, "an array");
    }
    return push(std::move(f));
  }
  bool end_array() override {
    stack_.pop_back();
    return done();
  }

  bool key(string_t& k) override {
    Frame& f = stack_.back();
    f.field = nullptr;
    f.key = k;
    std::string canonical = k;
    if (f.message != nullptr) {
      f.field = f.message->FindFieldByName(k);
      for (int i = 0; f.field == nullptr && i < f.message->field_count(); ++i) {
        if (f.message->field(i)->json_name() == k) f.field = f.message->field(i);
      }
      if (f.field != nullptr) canonical = f.field->name();
    }
    auto [it, fresh] = f.seen.emplace(std::move(canonical), k);
    if (fresh) return true;
    if (it->second == k) return fail(fmt::format("duplicate key '{}'{}", printable(k, 64), in()));
    return fail(fmt::format("duplicate key '{}'{} (the same field as '{}')", printable(k, 64),
                            in(), printable(it->second, 64)));
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    std::string what = e.what();  // "[json.exception.parse_error.101] parse error at line 1, ..."
    if (const auto pos = what.find("] "); what.rfind("[json.exception.", 0) == 0 &&
                                          pos != std::string::npos) {
      what.erase(0, pos + 2);
    }
    return fail(printable(what, 200));
  }

 private:
  struct Frame {
    bool array = false;
    const Descriptor* message = nullptr;   // object: its message type (null: not checked)
    const FieldDescriptor* field = nullptr;  // object: field of the current key
    std::string key;                         // object: the current key
    std::map<std::string, std::string> seen;  // object: canonical field name -> key as written
    const FieldDescriptor* element = nullptr;  // array: the repeated field it holds
    size_t index = 0;                          // array: index of the next value
  };

  // Returns: the field the next value belongs to and the type it must have.
  std::pair<const FieldDescriptor*, Want> slot() const {
    const Frame& f = stack_.back();
    return f.array ? std::pair{f.element, want_of(f.element, true)}
                   : std::pair{f.field, want_of(f.field, false)};
  }

  // Returns: " in tasks[0]" for a key inside tasks[0], "" at the top level.
  std::string in() const {
    std::string path;
    for (size_t i = 0; i + 1 < stack_.size(); ++i) {
      const Frame& f = stack_[i];
      if (f.array) {
        path += fmt::format("[{}]", f.index);
      } else {
        path += (path.empty() ? "" : ".") + printable(f.key, 64);
      }
    }
    return path.empty() ? "" : " in " + path;
  }

  // Returns: "'count' in tasks[0]" or "tasks[0]" (an array element): the value being read.
  std::string here() const {
    const Frame& f = stack_.back();
    if (f.array) {
      std::string path;
      for (const Frame& g : stack_) {
        path += g.array ? fmt::format("[{}]", g.index)
                        : (path.empty() ? "" : ".") + printable(g.key, 64);
      }
      return path;
    }
    return fmt::format("'{}'{}", printable(f.key, 64), in());
  }

  bool push(Frame f) {
    if (stack_.size() >= kMaxJsonDepth) {
      return fail(fmt::format("nested more than {} levels deep", kMaxJsonDepth));
    }
    stack_.push_back(std::move(f));
    return true;
  }

  // A value ends here: advances the enclosing array.
  bool done() {
    if (!stack_.empty() && stack_.back().array) ++stack_.back().index;
    return true;
  }

  bool value(std::nullptr_t) {
    if (stack_.empty()) return fail("the top level must be an object");
    return done();
  }

  bool value(Want got, const std::string* text = nullptr) {
    if (stack_.empty()) return fail("the top level must be an object");
    const auto [field, want] = slot();
    bool ok = want == Want::kAny || want == got;
    if (want == Want::kEnum) ok = got == Want::kString || got == Want::kNumber;
    // protobuf writes non-finite floats as strings.
    if (want == Want::kNumber && got == Want::kString && field != nullptr &&
        (field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT ||
         field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE)) {
      ok = *text == "NaN" || *text == "Infinity" || *text == "-Infinity";
    }
    if (!ok) {
      if (got == Want::kString) {
        return wrong_type(want, fmt::format("a string (\"{}\")", printable(*text, 32)));
      }
      return wrong_type(want, got == Want::kBool ? "a boolean" : describe(got));
    }
    return done();
  }

  bool wrong_type(Want want, const std::string& got) {
    return fail(fmt::format("{} must be {}, not {}", here(), describe(want), got));
  }

  bool fail(std::string why) {
    if (!problem_) problem_ = std::move(why);
    return false;
  }

  const Descriptor& root_;
  std::vector<Frame> stack_;
  std::optional<std::string> problem_;
};

}  // namespace

std::optional<std::string> strict_json_problem(std::string_view json, const Descriptor& type) {
  Checker checker(type);
  const bool ok = Json::sax_parse(json.begin(), json.end(), &checker);
  if (!ok && !checker.problem()) return "not valid JSON";
  return checker.problem();
}

}  // namespace taskfarm
