#include "common/report.h"

#include "common/text.h"

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <iterator>

namespace taskfarm {

std::string count_of(uint64_t n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

std::string report_json(const v1::Report& report) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(report, &out, options);
  return out;
}

std::string report_table(const v1::Report& r) {
  std::string out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "job {} ({})\n", printable(r.job(), 128), printable(r.job_id()));
  fmt::format_to(it, "  tasks     {} total, {} ok, {} failed, {} retried, {} dropped\n",
                 r.tasks_total(), r.tasks_ok(), r.tasks_failed(), r.retried(),
                 count_of(r.duplicates_dropped(), "duplicate"));
  fmt::format_to(it, "  elapsed   {:.3f} s   {:.1f} tasks/s   {:.1f} MB/s   {:.2f} GFLOP/s\n",
                 r.elapsed_s(), r.tasks_per_s(), r.mb_per_s(), r.gflop_per_s());
  fmt::format_to(it, "  latency   p50 {:.0f} us   p90 {:.0f} us   p99 {:.0f} us   max {:.0f} us\n",
                 r.latency_us().p50(), r.latency_us().p90(), r.latency_us().p99(),
                 r.latency_us().max());
  fmt::format_to(it, "  digest    {}\n", r.result_digest());
  fmt::format_to(it, "  {:<16} {:>9} {:>7} {:>10} {:>12} {:>12}\n", "kernel", "tasks", "failed",
                 "busy s", "MB/s busy", "GFLOP/s busy");
  for (const auto& k : r.kernels()) {
    fmt::format_to(it, "  {:<16} {:>9} {:>7} {:>10.3f} {:>12.1f} {:>12.2f}\n", printable(k.kernel()),
                   k.tasks(), k.failed(), k.busy_s(), k.mb_per_s(), k.gflop_per_s());
  }
  fmt::format_to(it, "  {:<24} {:<16} {:<24} {:>9} {:>10}\n", "worker", "host", "device", "tasks",
                 "busy s");
  for (const auto& w : r.workers()) {
    fmt::format_to(it, "  {:<24} {:<16} {:<24} {:>9} {:>10.3f}\n", printable(w.id()),
                   printable(w.host()), printable(w.device()),
                   w.tasks(), w.busy_s());
  }
  for (const auto& f : r.failures()) {
    fmt::format_to(it, "  failed task {} ({}, {}): {}\n", f.task_id(), printable(f.kernel()),
                   count_of(f.attempts(), "attempt"), printable(f.error(), 300));
  }
  if (!r.state().empty() && r.state() != "done" && r.state() != "failed") {
    fmt::format_to(it, "  state     {} at {}/{} tasks\n", r.state(),
                   r.tasks_ok() + r.tasks_failed(), r.tasks_total());
  }
  return out;
}

namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

void append_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void append_base64(std::string& out, const std::string& bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out += '"';
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16 |
                       static_cast<uint8_t>(bytes[i + 1]) << 8 | static_cast<uint8_t>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  out += '"';
}

void append_double(std::string& out, double v) {
  // As protobuf's mapping: the special values are strings.
  if (std::isnan(v)) {
    out += "\"NaN\"";
  } else if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  } else {
    out += fmt::format("{}", v);
  }
}

void append_message(std::string& out, const Message& m);

// Appends element `i` of a repeated field, or the singular field when i < 0.
void append_value(std::string& out, const Message& m, const FieldDescriptor* f, int i) {
  const Reflection* r = m.GetReflection();
  const bool rep = i >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      out += fmt::format("{}", rep ? r->GetRepeatedInt32(m, f, i) : r->GetInt32(m, f));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      out += fmt::format("{}", rep ? r->GetRepeatedInt64(m, f, i) : r->GetInt64(m, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      out += fmt::format("{}", rep ? r->GetRepeatedUInt32(m, f, i) : r->GetUInt32(m, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      out += fmt::format("{}", rep ? r->GetRepeatedUInt64(m, f, i) : r->GetUInt64(m, f));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      append_double(out, rep ? r->GetRepeatedDouble(m, f, i) : r->GetDouble(m, f));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      append_double(out, rep ? r->GetRepeatedFloat(m, f, i) : r->GetFloat(m, f));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out += (rep ? r->GetRepeatedBool(m, f, i) : r->GetBool(m, f)) ? "true" : "false";
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int v = rep ? r->GetRepeatedEnumValue(m, f, i) : r->GetEnumValue(m, f);
      if (const auto* e = f->enum_type()->FindValueByNumber(v)) {
        append_string(out, e->name());
      } else {
        out += fmt::format("{}", v);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& s =
          rep ? r->GetRepeatedStringReference(m, f, i, &scratch) : r->GetStringReference(m, f, &scratch);
      if (f->type() == FieldDescriptor::TYPE_BYTES) {
        append_base64(out, s);
      } else {
        append_string(out, s);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      append_message(out, rep ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f));
      break;
  }
}

void append_message(std::string& out, const Message& m) {
  const auto* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  out += '{';
  bool first = true;
  for (int k = 0; k < d->field_count(); ++k) {
    const FieldDescriptor* f = d->field(k);
    // Like always_print_primitive_fields: unset messages and oneof members are left out.
    if (!f->is_repeated() && (f->containing_oneof() || f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) &&
        !r->HasField(m, f)) {
      continue;
    }
    if (!first) out += ',';
    first = false;
    append_string(out, f->name());
    out += ':';
    if (f->is_repeated()) {
      out += '[';
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        if (i > 0) out += ',';
        append_value(out, m, f, i);
      }
      out += ']';
    } else {
      append_value(out, m, f, -1);
    }
  }
  out += '}';
}

}  // namespace

std::string json_with_numbers(const Message& message) {
  std::string out;
  append_message(out, message);
  return out;
}

}  // namespace taskfarm
