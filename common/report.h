// Reports and status as text and JSON, shared by the sink (which writes reports) and the
// `taskfarm` client (which prints them): formatting only, no sockets.
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/protocol.h"

namespace taskfarm {

// Returns: the report as a JSON object on one line (protobuf's JSON mapping, proto field names).
std::string report_json(const v1::Report& report);

// Returns: the human-readable table printed at the end of a batch.
std::string report_table(const v1::Report& report);

// Returns: `message` as a JSON object on one line, like protobuf's JSON mapping with proto field
// names and fields at their default values, except that 64-bit integers are JSON numbers (the
// mapping writes them as strings, "done": "64"), so that scripts get numbers. Values above 2^53
// lose precision in JavaScript, not in Python or jq 1.7.
std::string json_with_numbers(const google::protobuf::Message& message);

// Returns: "1 attempt", "3 attempts": `n` and the noun, plural unless n is 1.
std::string count_of(uint64_t n, std::string_view noun);

}  // namespace taskfarm
