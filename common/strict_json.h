// A strict pre-pass for JSON that protobuf's parser will read. protobuf's JSON mapping accepts
// a key given twice (the last value wins; two arrays of a repeated field are joined) and numbers
// written as strings ("count": "7"); in a hand-written job file both are mistakes, so they are
// refused before protobuf sees the text.
#pragma once

#include <google/protobuf/descriptor.h>

#include <optional>
#include <string>
#include <string_view>

namespace taskfarm {

// Deepest nesting strict_json_problem accepts (a job file needs 3 levels).
inline constexpr size_t kMaxJsonDepth = 32;

// Returns: why `json` is not a strict rendering of a message of `type`, in one line, or nullopt:
// - not JSON (RFC 8259: no comments, single quotes, bare keys or trailing commas);
// - a key given twice in one object ("duplicate key 'name'"), where the JSON name and the proto
//   name of a field (maxAttempts, max_attempts) are the same key;
// - a value of the wrong JSON type for its field: a number field given a string
//   ("'count' in tasks[0] must be a number, not a string"), a bool field a non-boolean, a string
//   field a non-string, a repeated field a non-array, a message field a non-object;
// - nesting deeper than kMaxJsonDepth.
// Unknown keys are left to protobuf (which refuses them); their values are still checked for
// duplicate keys. null is accepted anywhere, as protobuf reads it as the field's default.
// Never throws (except std::bad_alloc).
std::optional<std::string> strict_json_problem(std::string_view json,
                                               const google::protobuf::Descriptor& type);

}  // namespace taskfarm
